# Build: no protoc needed (build.rs compiles the protos with protox).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/connector-control /usr/local/bin/connector-control
USER nobody
ENV CONNECTOR_CONTROL_LISTEN=0.0.0.0:50051
EXPOSE 50051
ENTRYPOINT ["connector-control"]
CMD ["serve"]
