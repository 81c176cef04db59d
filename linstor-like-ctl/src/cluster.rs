//! The cluster state the controller owns, and every change to it as a typed [`Change`].
//!
//! Why changes instead of free mutation: each request computes its changes first (validating
//! everything against the current state), the store persists them atomically, and only then
//! are they applied in memory — so a failed write leaves both the store and the controller as
//! they were, and the same rows rebuild the state at start ([`Cluster::from_rows`]).
//!
//! Each object is one row `(kind, key, JSON)`; SQLite keeps them in a table, etcd under
//! `/replbd/objects/KIND/KEY`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::model::{DEFAULT_GROUP, Node, Props, Resource, ResourceDefinition, ResourceGroup, StoragePool};

/// One persisted object, or its deletion (`value: None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The object kind (`node`, `storage-pool`, ...).
    pub kind: String,
    /// Its key within the kind (`n1`, `n1/pool1`, ...).
    pub key: String,
    /// Its JSON, or `None` to delete it.
    pub value: Option<String>,
}

/// A stored row that cannot be read back.
#[derive(Debug, Error)]
#[error("stored {kind} {key:?} is not valid: {source} (was the database written by a newer replbd?)")]
pub struct RowError {
    /// The kind.
    pub kind: String,
    /// The key.
    pub key: String,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

/// A change to the cluster state.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Replace the controller's properties.
    ControllerProps(Props),
    /// Create or replace a node.
    PutNode(Node),
    /// Delete a node.
    DeleteNode(String),
    /// Create or replace a storage pool.
    PutPool(StoragePool),
    /// Delete a storage pool (node, name).
    DeletePool(String, String),
    /// Create or replace a resource group.
    PutGroup(ResourceGroup),
    /// Delete a resource group.
    DeleteGroup(String),
    /// Create or replace a resource definition (with its volume definitions).
    PutDefinition(ResourceDefinition),
    /// Delete a resource definition.
    DeleteDefinition(String),
    /// Create or replace a resource.
    PutResource(Resource),
    /// Delete a resource (definition, node).
    DeleteResource(String, String),
}

const CONTROLLER: &str = "controller";
const NODE: &str = "node";
const POOL: &str = "storage-pool";
const GROUP: &str = "resource-group";
const DEFINITION: &str = "resource-definition";
const RESOURCE: &str = "resource";

fn put<T: Serialize>(kind: &str, key: String, value: &T) -> Row {
    Row {
        kind: kind.to_owned(),
        key,
        // Serializing these plain structs cannot fail (string keys, no non-finite floats).
        value: Some(serde_json::to_string(value).unwrap_or_default()),
    }
}

fn delete(kind: &str, key: String) -> Row {
    Row {
        kind: kind.to_owned(),
        key,
        value: None,
    }
}

impl Change {
    /// The row persisting this change.
    pub fn row(&self) -> Row {
        match self {
            Change::ControllerProps(p) => put(CONTROLLER, "props".into(), p),
            Change::PutNode(n) => put(NODE, n.name.clone(), n),
            Change::DeleteNode(n) => delete(NODE, n.clone()),
            Change::PutPool(p) => put(POOL, format!("{}/{}", p.node, p.name), p),
            Change::DeletePool(node, name) => delete(POOL, format!("{node}/{name}")),
            Change::PutGroup(g) => put(GROUP, g.name.clone(), g),
            Change::DeleteGroup(g) => delete(GROUP, g.clone()),
            Change::PutDefinition(d) => put(DEFINITION, d.name.clone(), d),
            Change::DeleteDefinition(d) => delete(DEFINITION, d.clone()),
            Change::PutResource(r) => put(RESOURCE, format!("{}/{}", r.name, r.node), r),
            Change::DeleteResource(name, node) => delete(RESOURCE, format!("{name}/{node}")),
        }
    }
}

/// The whole persisted state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    /// Controller properties: cluster-wide defaults.
    pub props: Props,
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Storage pools by (node, name).
    pub pools: BTreeMap<(String, String), StoragePool>,
    /// Resource groups by name.
    pub groups: BTreeMap<String, ResourceGroup>,
    /// Resource definitions by name.
    pub definitions: BTreeMap<String, ResourceDefinition>,
    /// Resources by (definition, node).
    pub resources: BTreeMap<(String, String), Resource>,
}

fn parse<T: DeserializeOwned>(row: &Row, value: &str) -> Result<T, RowError> {
    serde_json::from_str(value).map_err(|source| RowError {
        kind: row.kind.clone(),
        key: row.key.clone(),
        source,
    })
}

impl Cluster {
    /// Applies `change` in memory.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::ControllerProps(p) => self.props = p,
            Change::PutNode(n) => {
                self.nodes.insert(n.name.clone(), n);
            }
            Change::DeleteNode(n) => {
                self.nodes.remove(&n);
            }
            Change::PutPool(p) => {
                self.pools.insert((p.node.clone(), p.name.clone()), p);
            }
            Change::DeletePool(node, name) => {
                self.pools.remove(&(node, name));
            }
            Change::PutGroup(g) => {
                self.groups.insert(g.name.clone(), g);
            }
            Change::DeleteGroup(g) => {
                self.groups.remove(&g);
            }
            Change::PutDefinition(d) => {
                self.definitions.insert(d.name.clone(), d);
            }
            Change::DeleteDefinition(d) => {
                self.definitions.remove(&d);
            }
            Change::PutResource(r) => {
                self.resources.insert((r.name.clone(), r.node.clone()), r);
            }
            Change::DeleteResource(name, node) => {
                self.resources.remove(&(name, node));
            }
        }
    }

    /// Rebuilds the state from stored rows (unknown kinds are skipped: a newer controller's
    /// additions do not stop an older one from reading what it knows).
    pub fn from_rows(rows: &[Row]) -> Result<Cluster, RowError> {
        let mut c = Cluster::default();
        for row in rows {
            let Some(v) = row.value.as_deref() else { continue };
            let change = match row.kind.as_str() {
                CONTROLLER => Change::ControllerProps(parse(row, v)?),
                NODE => Change::PutNode(parse(row, v)?),
                POOL => Change::PutPool(parse(row, v)?),
                GROUP => Change::PutGroup(parse(row, v)?),
                DEFINITION => Change::PutDefinition(parse(row, v)?),
                RESOURCE => Change::PutResource(parse(row, v)?),
                _ => continue,
            };
            c.apply(change);
        }
        Ok(c)
    }

    /// The changes that create what every cluster has: the default resource group.
    pub fn bootstrap(&self) -> Vec<Change> {
        if self.groups.contains_key(DEFAULT_GROUP) {
            return Vec::new();
        }
        vec![Change::PutGroup(ResourceGroup {
            name: DEFAULT_GROUP.to_owned(),
            description: "the default resource group".to_owned(),
            placement: Default::default(),
            props: Props::new(),
        })]
    }

    /// The resources of definition `name`, by node.
    pub fn resources_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources
            .range((name.to_owned(), String::new())..)
            .take_while(move |((rd, _), _)| rd == name)
            .map(|(_, r)| r)
    }

    /// The resources on node `node`.
    pub fn resources_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.values().filter(move |r| r.node == node)
    }

    /// The storage pools of node `node`.
    pub fn pools_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a StoragePool> + 'a {
        self.pools
            .range((node.to_owned(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeType;

    #[test]
    fn rows_rebuild_the_state() {
        let mut c = Cluster::default();
        let changes = vec![
            Change::PutNode(Node {
                name: "n1".into(),
                node_type: NodeType::Satellite,
                address: "127.0.0.1".into(),
                port: 3366,
                props: Props::new(),
                evicted: false,
                evacuating: false,
            }),
            Change::ControllerProps([("A".to_owned(), "b".to_owned())].into()),
        ];
        let mut rows = Vec::new();
        for ch in changes.into_iter().chain(c.bootstrap()) {
            rows.push(ch.row());
            c.apply(ch);
        }
        assert_eq!(Cluster::from_rows(&rows).unwrap(), c);
        rows.push(Change::DeleteNode("n1".into()).row());
        let mut rebuilt = Cluster::from_rows(&rows[..2]).unwrap();
        rebuilt.apply(Change::DeleteNode("n1".into()));
        assert!(rebuilt.nodes.is_empty());
    }
}
