"""A connector-control agent written from the proto alone (docs/agent-protocol.md).

It runs simulated connectors: each one's checkpoint follows the clock, over a
store that holds the last --store-retention of change data. Connectors whose id
starts with --failing-prefix fail on their own shortly after they start.

    python agent.py --control-plane 127.0.0.1:50051 --region eu-2 \
        --agent-id py-1 --server-ip 10.0.2.9

Stubs come from the proto at install time (see README.md here).
"""

import argparse
import asyncio
import logging
import random
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent / "gen"))
from connector.v1 import agent_pb2, agent_pb2_grpc, connector_pb2  # noqa: E402

log = logging.getLogger("python-agent")

RUNNING = connector_pb2.CONNECTOR_STATE_RUNNING
STOPPED = connector_pb2.CONNECTOR_STATE_STOPPED
FAILED = connector_pb2.CONNECTOR_STATE_FAILED


class Connector:
    """One simulated connector, and the generation it applied."""

    def __init__(self, connector_id):
        self.id = connector_id
        self.state = STOPPED
        self.generation = 0
        # None until it runs here: never make a checkpoint up.
        self.checkpoint = None
        self.message = ""


class Agent:
    def __init__(self, args):
        self.args = args
        self.instance_id = str(uuid.uuid4())
        self.connectors = {}
        # One lock per connector: its commands run in order, others meanwhile.
        self.locks = {}
        self.retention = timedelta(seconds=args.store_retention)

    def store_range(self):
        now = datetime.now(timezone.utc)
        return now - self.retention, now

    def status(self, c):
        earliest, latest = self.store_range()
        status = agent_pb2.ConnectorStatus(
            connector_id=c.id, state=c.state, generation=c.generation, message=c.message
        )
        if c.state == RUNNING:
            c.checkpoint = datetime.now(timezone.utc) - timedelta(seconds=1)
            status.latency.FromTimedelta(timedelta(seconds=1))
        if c.checkpoint is not None:
            status.checkpoint_time.FromDatetime(c.checkpoint)
        status.store_range.earliest_time.FromDatetime(earliest)
        status.store_range.latest_time.FromDatetime(latest)
        if c.state == FAILED:
            status.retriable = True
        return status

    def statuses(self):
        return [self.status(c) for c in self.connectors.values()]

    async def carry_out(self, command):
        """The result of one command: fenced by generation, duplicates acknowledged."""
        c = self.connectors.setdefault(command.connector_id, Connector(command.connector_id))
        result = agent_pb2.CommandResult(command_id=command.id, success=True)
        if command.generation > c.generation:
            if command.kind == connector_pb2.COMMAND_KIND_START:
                refusal = self.start(c, command)
                if refusal:
                    result.success = False
                    result.error_reason, result.error_message = refusal
                    result.retriable = False
                else:
                    c.generation = command.generation
            elif command.kind == connector_pb2.COMMAND_KIND_PAUSE:
                c.state, c.message = STOPPED, ""
                c.generation = command.generation
            else:
                result.success = False
                result.error_reason = "UNKNOWN_COMMAND"
                result.error_message = f"command kind {command.kind} is not known"
        result.status.CopyFrom(self.status(c))
        return result

    def start(self, c, command):
        """Starts c, or says why not: (reason, message)."""
        earliest, latest = self.store_range()
        if command.HasField("pull_back_time"):
            time = command.pull_back_time.ToDatetime(tzinfo=timezone.utc)
            if time < earliest or time > latest + timedelta(seconds=60):
                return (
                    "PULL_BACK_OUT_OF_RANGE",
                    f"the store holds data from {earliest.isoformat()} to {latest.isoformat()}",
                )
            c.checkpoint = time
        else:
            # The checkpoint the control plane recorded wins over our own;
            # neither: a new connector, which begins with the data of now.
            checkpoint = c.checkpoint or latest
            if command.HasField("checkpoint_time"):
                checkpoint = command.checkpoint_time.ToDatetime(tzinfo=timezone.utc)
            if checkpoint < earliest and not command.skip_to_earliest:
                return ("CHECKPOINT_OUT_OF_RANGE", "the checkpoint is gone from the store")
            c.checkpoint = max(checkpoint, earliest)
        c.state, c.message = RUNNING, ""
        if c.id.startswith(self.args.failing_prefix):
            asyncio.get_running_loop().call_later(0.5, self.fail, c, command.generation)
        return None

    def fail(self, c, generation):
        if c.state == RUNNING and c.generation == generation:
            c.state, c.message = FAILED, "the simulated source went away"

    async def session(self, channel):
        """One session; returns the seconds to wait before the next one, or None."""
        outbound = asyncio.Queue()
        hello = agent_pb2.Hello(
            agent_id=self.args.agent_id,
            instance_id=self.instance_id,
            region=self.args.region,
            server_ip=self.args.server_ip,
            version="python-agent 1",
            connectors=self.statuses(),
            capabilities=agent_pb2.AgentCapabilities(driver="python-simulated", pull_back=True),
        )
        # Queued before the call: the server reads hello first.
        await outbound.put(agent_pb2.AgentMessage(hello=hello))

        async def requests():
            while True:
                yield await outbound.get()

        call = agent_pb2_grpc.AgentServiceStub(channel).Connect(requests())
        first = await call.read()
        if first is grpc.aio.EOF or not first.HasField("welcome"):
            raise ConnectionError(f"expected welcome, got {first}")
        self.welcomed = True
        interval = first.welcome.heartbeat_interval.ToTimedelta().total_seconds() or 10
        log.info("connected to the control plane, epoch %d", first.welcome.session_epoch)

        async def heartbeats():
            sequence = 0
            while True:
                await asyncio.sleep(interval)
                sequence += 1
                beat = agent_pb2.Heartbeat(sequence=sequence, connectors=self.statuses())
                await outbound.put(agent_pb2.AgentMessage(heartbeat=beat))

        async def answer(command):
            lock = self.locks.setdefault(command.connector_id, asyncio.Lock())
            async with lock:
                result = await self.carry_out(command)
            await outbound.put(agent_pb2.AgentMessage(result=result))

        beating = asyncio.create_task(heartbeats())
        tasks = set()
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    raise ConnectionError("the control plane closed the stream")
                which = message.WhichOneof("message")
                if which == "command":
                    task = asyncio.create_task(answer(message.command))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif which == "reconnect":
                    call.cancel()
                    return message.reconnect.retry_after.ToTimedelta().total_seconds()
                elif which == "report_refused":
                    log.warning("a report was refused: %s", message.report_refused.message)
                # Anything newer than this agent knows is ignored.
        finally:
            beating.cancel()

    async def run(self):
        backoff = 1.0
        addresses = self.args.control_plane.split(",")
        turn = random.randrange(len(addresses))
        while True:
            address = addresses[turn % len(addresses)]
            turn += 1
            async with grpc.aio.insecure_channel(address) as channel:
                self.welcomed = False
                try:
                    retry_after = await self.session(channel)
                    delay, backoff = retry_after, 1.0
                except (grpc.aio.AioRpcError, ConnectionError) as error:
                    if self.welcomed:
                        backoff = 1.0
                    log.warning("session lost: %s; retrying in %.1fs", error, backoff)
                    delay, backoff = backoff, min(backoff * 1.6, 30.0)
            # Jitter of ±20%, so that a fleet does not come back in lockstep.
            await asyncio.sleep(min(delay * random.uniform(0.8, 1.2), 30.0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-plane", default="127.0.0.1:50051", help="host:port, comma-separated")
    parser.add_argument("--region", required=True)
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--server-ip", required=True)
    parser.add_argument("--store-retention", type=float, default=86400, help="seconds")
    parser.add_argument("--failing-prefix", default="fail", help="connectors that fail on their own")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(Agent(args).run())


if __name__ == "__main__":
    main()
