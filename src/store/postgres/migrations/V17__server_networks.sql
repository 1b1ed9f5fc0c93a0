-- The server filter (an address or a CIDR network) compares addresses,
-- not text: 10.2.1.0/24 must not pick 10.2.13.9.
CREATE INDEX connectors_server_inet ON connectors ((NULLIF(server_ip, '')::inet));
