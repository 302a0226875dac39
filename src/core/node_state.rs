//! A node's operator state (DESIGN.md "Terms": active, draining, disabled, standby), apart
//! from its health. Set by the config file, the admin API or, with `cluster:`, the group.

/// Operator state of a node; independent of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeState {
    /// All traffic.
    Active = 0,
    /// Pinned sessions stay, no new ones.
    Draining = 1,
    /// No traffic: a pinned session moves on its next request.
    Disabled = 2,
    /// Used only when no active node of the domain is up.
    Standby = 3,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Disabled => "disabled",
            NodeState::Standby => "standby",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        match s {
            "active" => Some(NodeState::Active),
            "draining" => Some(NodeState::Draining),
            "disabled" => Some(NodeState::Disabled),
            "standby" => Some(NodeState::Standby),
            _ => None,
        }
    }

    pub fn from_u8(v: u8) -> NodeState {
        match v {
            1 => NodeState::Draining,
            2 => NodeState::Disabled,
            3 => NodeState::Standby,
            _ => NodeState::Active,
        }
    }
}
