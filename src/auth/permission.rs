//! What a call needs (`Permission`) and what each role grants.

use serde::Deserialize;
use std::fmt;

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// GetConnector, ListConnectors, ListCommands, ListRegions.
    ConnectorsRead,
    /// ListAgents, ListReplicas.
    AgentsRead,
    /// StartConnector, PauseConnector and their batch calls.
    ConnectorsOperate,
    /// CreateConnector.
    ConnectorsCreate,
    /// AgentService/Connect.
    AgentsConnect,
    /// AuditService/ListAuditEvents.
    AuditRead,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::ConnectorsRead => "connectors.read",
            Permission::AgentsRead => "agents.read",
            Permission::ConnectorsOperate => "connectors.operate",
            Permission::ConnectorsCreate => "connectors.create",
            Permission::AgentsConnect => "agents.connect",
            Permission::AuditRead => "audit.read",
        }
    }

    /// The roles that grant it, for error messages.
    pub fn granted_by(self) -> &'static str {
        match self {
            Permission::ConnectorsRead | Permission::AgentsRead | Permission::AuditRead => {
                "viewer, operator or admin"
            }
            Permission::ConnectorsOperate => "operator or admin",
            Permission::ConnectorsCreate => "admin",
            Permission::AgentsConnect => "agent",
        }
    }
}

/// A principal's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Agent,
}

impl Role {
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Viewer => matches!(permission, ConnectorsRead | AgentsRead | AuditRead),
            Role::Operator => matches!(
                permission,
                ConnectorsRead | AgentsRead | AuditRead | ConnectorsOperate
            ),
            Role::Admin => matches!(
                permission,
                ConnectorsRead | AgentsRead | AuditRead | ConnectorsOperate | ConnectorsCreate
            ),
            Role::Agent => permission == AgentsConnect,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_contract_says() {
        use Permission::*;
        let all = [
            ConnectorsRead,
            AgentsRead,
            AuditRead,
            ConnectorsOperate,
            ConnectorsCreate,
            AgentsConnect,
        ];
        let granted = |role: Role| -> Vec<Permission> {
            all.into_iter().filter(|p| role.grants(*p)).collect()
        };
        assert_eq!(
            granted(Role::Viewer),
            [ConnectorsRead, AgentsRead, AuditRead]
        );
        assert_eq!(
            granted(Role::Operator),
            [ConnectorsRead, AgentsRead, AuditRead, ConnectorsOperate]
        );
        assert_eq!(
            granted(Role::Admin),
            [
                ConnectorsRead,
                AgentsRead,
                AuditRead,
                ConnectorsOperate,
                ConnectorsCreate
            ]
        );
        assert_eq!(granted(Role::Agent), [AgentsConnect]);
    }
}
