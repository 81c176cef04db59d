//! The controller's gRPC service: requests → decisions ([`super::ops`]) → store → agents, and the
//! lists the CLI shows ([`super::view`]).
//!
//! A change is answered after every node affected has applied it (or is known to be offline): the
//! reply lists one line per effect, `ERROR:` lines for what a node could not do. A failed request
//! is a gRPC error naming the cause and an error report id; a standby controller (etcd) answers
//! every request with UNAVAILABLE so clients move on to the next controller.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

use replbd_proto::agent::{PoolSpec, SetRoleRequest};
use replbd_proto::controller as pb;
use replbd_proto::controller::controller_server::Controller as Api;
use tonic::{Request, Response, Status};

use super::core::Controller;
use super::error::ApiError;
use super::ops::{self, Outcome, Where};
use super::{links, view};
use crate::cluster::Change;
use crate::model::props::effective;
use crate::model::{Driver, Node, Placement, ResourceGroup, StoragePool};
use crate::placement::Count;

/// Which controller serves requests: none while this one is a standby.
#[derive(Clone, Default)]
pub struct Active {
    inner: Arc<RwLock<(Option<Arc<Controller>>, String)>>,
}

impl Active {
    /// Makes `ctl` the controller that answers.
    pub fn set(&self, ctl: Arc<Controller>) {
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = (Some(ctl), String::new());
    }

    /// Records the active controller's id while this one waits.
    pub fn standby(&self, leader: &str) {
        self.inner.write().unwrap_or_else(PoisonError::into_inner).1 = leader.to_owned();
    }

    /// The controller, if this one is active.
    pub fn get(&self) -> Result<Arc<Controller>, ApiError> {
        let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        g.0.clone().ok_or_else(|| ApiError::Standby {
            leader: if g.1.is_empty() {
                "unknown".into()
            } else {
                g.1.clone()
            },
        })
    }
}

/// The service.
#[derive(Clone)]
pub struct Service {
    active: Active,
}

impl Service {
    /// The service answering with whatever controller `active` holds.
    pub fn new(active: Active) -> Service {
        Service { active }
    }

    async fn fail(&self, context: &str, e: ApiError) -> Status {
        let ApiError::Standby { .. } = e else {
            if let Ok(ctl) = self.active.get() {
                if matches!(e, ApiError::Placement(_)) {
                    ctl.placement_failed();
                }
                let id = ctl
                    .report("controller", context, &e.to_string(), &format!("{e:?}"))
                    .await;
                return Status::new(e.code(), format!("{e} (error report {id})"));
            }
            return Status::new(e.code(), e.to_string());
        };
        Status::new(e.code(), e.to_string())
    }

    fn ctl(&self) -> Result<Arc<Controller>, Status> {
        self.active
            .get()
            .map_err(|e| Status::new(e.code(), e.to_string()))
    }

    /// Runs a change: decide, persist, start/stop links, push to the agents, report.
    async fn change(
        &self,
        context: String,
        decide: impl FnOnce(&crate::cluster::Cluster) -> Result<Outcome, ApiError>,
    ) -> Result<Response<pb::Reply>, Status> {
        let ctl = self.ctl()?;
        let outcome = match ctl.commit(decide).await {
            Ok(o) => o,
            Err(e) => return Err(self.fail(&context, e).await),
        };
        let mut messages = outcome.messages;
        let mut touched: BTreeSet<(String, String)> = BTreeSet::new();
        let mut pushes = false;
        for ch in &outcome.changes {
            match ch {
                Change::PutNode(n) => links::spawn(&ctl, &n.name),
                Change::DeleteNode(n) => ctl.remove_link(n).await,
                Change::PutResource(r) => {
                    touched.insert((r.node.clone(), r.name.clone()));
                    pushes = true;
                }
                Change::DeleteResource(name, node) => {
                    touched.insert((node.clone(), name.clone()));
                    pushes = true;
                }
                Change::PutPool(_)
                | Change::DeletePool(..)
                | Change::PutDefinition(_)
                | Change::DeleteDefinition(_) => {
                    pushes = true;
                }
                _ => {}
            }
        }
        if pushes {
            let results = ctl.sync_all().await;
            for (node, name) in &touched {
                match results.get(node) {
                    Some(Ok(rs)) => {
                        if let Some(r) = rs.iter().find(|r| &r.name == name) {
                            if r.error.is_empty() {
                                messages.push(format!("SUCCESS: {node}: {}", r.message));
                            } else {
                                let id = ctl.report(node, &context, &r.error, "").await;
                                messages
                                    .push(format!("ERROR: {node}: {name}: {} (error report {id})", r.error));
                            }
                        }
                    }
                    Some(Err(e)) => messages.push(format!("WARNING: {node}: {e}")),
                    None => {}
                }
            }
        }
        Ok(Response::new(pb::Reply { messages }))
    }
}

fn placement(p: Option<pb::PlacementSpec>) -> Placement {
    let p = p.unwrap_or_default();
    Placement {
        place_count: (p.place_count > 0).then_some(p.place_count),
        storage_pools: p.storage_pools,
        replicas_on_same: p.replicas_on_same,
        replicas_on_different: p.replicas_on_different,
        do_not_place_with: p.do_not_place_with,
        diskless_on_remaining: p.diskless_on_remaining.then_some(true),
    }
}

fn placement_pb(p: &Placement) -> pb::PlacementSpec {
    pb::PlacementSpec {
        place_count: p.place_count.unwrap_or(0),
        storage_pools: p.storage_pools.clone(),
        replicas_on_same: p.replicas_on_same.clone(),
        replicas_on_different: p.replicas_on_different.clone(),
        do_not_place_with: p.do_not_place_with.clone(),
        diskless_on_remaining: p.diskless_on_remaining == Some(true),
    }
}

fn port(p: u32) -> Result<u16, ApiError> {
    u16::try_from(p).map_err(|_| ApiError::Invalid(format!("port {p} is out of range 1-65535")))
}

#[tonic::async_trait]
impl Api for Service {
    async fn version(&self, _: Request<pb::Empty>) -> Result<Response<pb::VersionReply>, Status> {
        let ctl = self.ctl()?;
        Ok(Response::new(pb::VersionReply {
            version: replbd_proto::VERSION.into(),
            store: ctl.store().kind().into(),
            store_location: ctl.store().location(),
            controller_id: ctl.settings.id.clone(),
        }))
    }

    async fn node_create(&self, req: Request<pb::NodeCreateRequest>) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let context = format!("node create {}", r.name);
        let node_type = match ops::node_type(&r.node_type) {
            Ok(t) => t,
            Err(e) => return Err(self.fail(&context, e).await),
        };
        let p = if r.port == 0 {
            u32::from(replbd_proto::DEFAULT_AGENT_PORT)
        } else {
            r.port
        };
        let port = match port(p) {
            Ok(p) => p,
            Err(e) => return Err(self.fail(&context, e).await),
        };
        let node = Node {
            name: r.name,
            node_type,
            address: r.address,
            port,
            props: r.props.into_iter().collect(),
            evicted: false,
            evacuating: false,
        };
        self.change(context, move |c| ops::node_create(c, node)).await
    }

    async fn node_list(&self, _: Request<pb::Empty>) -> Result<Response<pb::NodeListReply>, Status> {
        let ctl = self.ctl()?;
        let c = ctl.cluster();
        let rt = ctl.runtime();
        let nodes = c
            .nodes
            .values()
            .map(|n| {
                let r = rt.node(&n.name);
                pb::Node {
                    name: n.name.clone(),
                    node_type: n.node_type.to_string(),
                    address: n.address.clone(),
                    port: u32::from(n.port),
                    state: if n.evicted { "EVICTED".into() } else { r.display() },
                    props: n.props.clone().into_iter().collect(),
                    offline_since: r.offline_since_unix,
                    evacuating: n.evacuating,
                }
            })
            .collect();
        Ok(Response::new(pb::NodeListReply { nodes }))
    }

    async fn node_delete(&self, req: Request<pb::NodeRef>) -> Result<Response<pb::Reply>, Status> {
        let name = req.into_inner().name;
        self.change(format!("node delete {name}"), move |c| ops::node_delete(c, &name))
            .await
    }

    async fn node_lost(&self, req: Request<pb::NodeRef>) -> Result<Response<pb::Reply>, Status> {
        let name = req.into_inner().name;
        self.change(format!("node lost {name}"), move |c| ops::node_lost(c, &name))
            .await
    }

    async fn node_evacuate(&self, req: Request<pb::NodeRef>) -> Result<Response<pb::Reply>, Status> {
        let name = req.into_inner().name;
        let infos = self.ctl()?.node_infos();
        self.change(format!("node evacuate {name}"), move |c| {
            ops::node_evacuate(c, &infos, &name)
        })
        .await
    }

    async fn node_restore(&self, req: Request<pb::NodeRef>) -> Result<Response<pb::Reply>, Status> {
        let name = req.into_inner().name;
        self.change(format!("node restore {name}"), move |c| {
            ops::node_restore(c, &name)
        })
        .await
    }

    async fn storage_pool_create(
        &self,
        req: Request<pb::StoragePoolCreateRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let context = format!("storage-pool create {} {} {}", r.driver, r.node, r.name);
        let ctl = self.ctl()?;
        let driver: Driver = match r.driver.parse() {
            Ok(d) => d,
            Err(e) => return Err(self.fail(&context, ApiError::Invalid(e)).await),
        };
        let pool = StoragePool {
            node: r.node.clone(),
            name: r.name.clone(),
            driver,
            backing: r.backing.clone(),
            props: r.props.into_iter().collect(),
        };
        // Check the whole request before asking the node.
        let checked = ops::pool_create(&ctl.cluster(), pool.clone());
        if let Err(e) = checked {
            return Err(self.fail(&context, e).await);
        }
        let client = ctl.runtime().node(&r.node).client;
        let Some(mut client) = client else {
            let e = ApiError::Agent {
                node: r.node.clone(),
                message: "is OFFLINE: a storage pool is checked on its node when it is created; start the node's agent first".into(),
            };
            return Err(self.fail(&context, e).await);
        };
        let probe = client
            .probe_pool(PoolSpec {
                name: r.name.clone(),
                driver: driver.as_str().into(),
                backing: r.backing.clone(),
            })
            .await;
        let status = match probe {
            Ok(s) => s.into_inner(),
            Err(s) => {
                let e = ApiError::Agent {
                    node: r.node.clone(),
                    message: s.message().to_owned(),
                };
                return Err(self.fail(&context, e).await);
            }
        };
        if !status.error.is_empty() {
            let e = ApiError::Agent {
                node: r.node.clone(),
                message: format!(
                    "storage pool {} ({}) is not usable: {}",
                    r.name, driver, status.error
                ),
            };
            return Err(self.fail(&context, e).await);
        }
        self.change(context, move |c| ops::pool_create(c, pool)).await
    }

    async fn storage_pool_list(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::StoragePoolListReply>, Status> {
        let ctl = self.ctl()?;
        let c = ctl.cluster();
        let rt = ctl.runtime();
        let mut pools = Vec::new();
        for n in c.nodes.values() {
            let r = rt.node(&n.name);
            pools.push(pb::StoragePool {
                name: "DfltDisklessStorPool".into(),
                node: n.name.clone(),
                driver: Driver::Diskless.provider().into(),
                state: if r.online() { "Ok".into() } else { "Unknown".into() },
                ..Default::default()
            });
            for p in c.pools_of(&n.name) {
                let st = r.pool(&p.name);
                pools.push(pb::StoragePool {
                    name: p.name.clone(),
                    node: p.node.clone(),
                    driver: p.driver.provider().into(),
                    backing: p.backing.clone(),
                    free_bytes: st.map_or(0, |s| s.free_bytes),
                    total_bytes: st.map_or(0, |s| s.total_bytes),
                    capacity_known: st.is_some_and(|s| s.error.is_empty()),
                    can_snapshots: st.is_some_and(|s| s.can_snapshots),
                    state: match st {
                        None => "Unknown".into(),
                        Some(s) if s.error.is_empty() => "Ok".into(),
                        Some(s) => format!("Error: {}", s.error),
                    },
                    props: p.props.clone().into_iter().collect(),
                });
            }
        }
        Ok(Response::new(pb::StoragePoolListReply { pools }))
    }

    async fn storage_pool_delete(
        &self,
        req: Request<pb::StoragePoolRef>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        self.change(format!("storage-pool delete {} {}", r.node, r.name), move |c| {
            ops::pool_delete(c, &r.node, &r.name)
        })
        .await
    }

    async fn resource_group_create(
        &self,
        req: Request<pb::ResourceGroupRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let g = ResourceGroup {
            name: r.name.clone(),
            description: r.description,
            placement: placement(r.placement),
            props: r.props.into_iter().collect(),
        };
        self.change(format!("resource-group create {}", r.name), move |c| {
            ops::group_create(c, g)
        })
        .await
    }

    async fn resource_group_modify(
        &self,
        req: Request<pb::ResourceGroupRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let g = ResourceGroup {
            name: r.name.clone(),
            description: r.description,
            placement: placement(r.placement),
            props: r.props.into_iter().collect(),
        };
        self.change(format!("resource-group modify {}", r.name), move |c| {
            ops::group_modify(c, g)
        })
        .await
    }

    async fn resource_group_list(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::ResourceGroupListReply>, Status> {
        let ctl = self.ctl()?;
        let groups = ctl
            .cluster()
            .groups
            .values()
            .map(|g| pb::ResourceGroup {
                name: g.name.clone(),
                description: g.description.clone(),
                placement: Some(placement_pb(&g.placement)),
                props: g.props.clone().into_iter().collect(),
            })
            .collect();
        Ok(Response::new(pb::ResourceGroupListReply { groups }))
    }

    async fn resource_group_delete(&self, req: Request<pb::NameRef>) -> Result<Response<pb::Reply>, Status> {
        let name = req.into_inner().name;
        self.change(format!("resource-group delete {name}"), move |c| {
            ops::group_delete(c, &name)
        })
        .await
    }

    async fn resource_group_spawn(
        &self,
        req: Request<pb::SpawnRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let context = format!("resource-group spawn {} {}", r.group, r.resource);
        let infos = self.ctl()?.node_infos();
        let (group, resource, sizes, only) = (r.group, r.resource, r.sizes, r.definitions_only);
        self.change(context, move |c| {
            let mut all = Outcome::default();
            let mut work = c.clone();
            let mut step = |o: Outcome, work: &mut crate::cluster::Cluster| {
                for ch in &o.changes {
                    work.apply(ch.clone());
                }
                all.changes.extend(o.changes);
                all.messages.extend(o.messages);
            };
            let g = work
                .groups
                .get(&group)
                .cloned()
                .ok_or_else(|| ApiError::not_found("resource group", &group, c.groups.keys()))?;
            if sizes.is_empty() {
                return Err(ApiError::Invalid("spawn needs the size of the volume".into()));
            }
            let o = ops::definition_create(&work, &resource, &group, 0, Default::default())?;
            step(o, &mut work);
            for (i, size) in sizes.iter().enumerate() {
                let o = ops::volume_create(&work, &resource, Some(i as u32), *size, 0)?;
                step(o, &mut work);
            }
            if !only {
                let count = g.placement.place_count.unwrap_or(2);
                let o = ops::resource_create(
                    &work,
                    &infos,
                    &resource,
                    Where::Auto {
                        count: Count::Total(count),
                        placement: Placement::default(),
                    },
                )?;
                step(o, &mut work);
            }
            Ok(all)
        })
        .await
    }

    async fn resource_definition_create(
        &self,
        req: Request<pb::ResourceDefinitionCreateRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let context = format!("resource-definition create {}", r.name);
        let p = match port(r.port) {
            Ok(p) => p,
            Err(e) => return Err(self.fail(&context, e).await),
        };
        let props = r.props.into_iter().collect();
        self.change(context, move |c| {
            ops::definition_create(c, &r.name, &r.group, p, props)
        })
        .await
    }

    async fn resource_definition_list(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::ResourceDefinitionListReply>, Status> {
        let ctl = self.ctl()?;
        let definitions = ctl
            .cluster()
            .definitions
            .values()
            .map(|d| pb::ResourceDefinition {
                name: d.name.clone(),
                group: d.group.clone(),
                port: u32::from(d.port),
                state: "ok".into(),
                props: d.props.clone().into_iter().collect(),
            })
            .collect();
        Ok(Response::new(pb::ResourceDefinitionListReply { definitions }))
    }

    async fn resource_definition_delete(
        &self,
        req: Request<pb::NameRef>,
    ) -> Result<Response<pb::Reply>, Status> {
        let name = req.into_inner().name;
        self.change(format!("resource-definition delete {name}"), move |c| {
            ops::definition_delete(c, &name)
        })
        .await
    }

    async fn volume_definition_create(
        &self,
        req: Request<pb::VolumeDefinitionCreateRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let number = r.has_number.then_some(r.number);
        self.change(format!("volume-definition create {}", r.resource), move |c| {
            ops::volume_create(c, &r.resource, number, r.size_bytes, r.minor)
        })
        .await
    }

    async fn volume_definition_list(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::VolumeDefinitionListReply>, Status> {
        let ctl = self.ctl()?;
        let volumes = ctl
            .cluster()
            .definitions
            .values()
            .flat_map(|d| {
                d.volumes.values().map(|v| pb::VolumeDefinition {
                    resource: d.name.clone(),
                    number: v.number,
                    size_bytes: v.size,
                    state: "ok".into(),
                    minor: v.minor,
                })
            })
            .collect();
        Ok(Response::new(pb::VolumeDefinitionListReply { volumes }))
    }

    async fn volume_definition_set_size(
        &self,
        req: Request<pb::VolumeDefinitionSetSizeRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        self.change(
            format!("volume-definition set-size {} {}", r.resource, r.number),
            move |c| ops::volume_set_size(c, &r.resource, r.number, r.size_bytes),
        )
        .await
    }

    async fn volume_definition_delete(
        &self,
        req: Request<pb::VolumeDefinitionRef>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        self.change(
            format!("volume-definition delete {} {}", r.resource, r.number),
            move |c| ops::volume_delete(c, &r.resource, r.number),
        )
        .await
    }

    async fn resource_create(
        &self,
        req: Request<pb::ResourceCreateRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let infos = self.ctl()?.node_infos();
        let wher = if r.auto_place {
            Where::Auto {
                count: if r.auto_place_additional {
                    Count::Additional(r.place_count)
                } else {
                    Count::Total(r.place_count)
                },
                placement: placement(r.placement),
            }
        } else {
            Where::Nodes {
                nodes: r.nodes.clone(),
                pool: r.storage_pool.clone(),
                diskless: r.diskless,
            }
        };
        let context = format!("resource create {}", r.resource);
        self.change(context, move |c| {
            ops::resource_create(c, &infos, &r.resource, wher)
        })
        .await
    }

    async fn resource_list(
        &self,
        req: Request<pb::ResourceListRequest>,
    ) -> Result<Response<pb::ResourceListReply>, Status> {
        let r = req.into_inner();
        let ctl = self.ctl()?;
        let c = ctl.cluster();
        let rt = ctl.runtime();
        let resources = c
            .resources
            .values()
            .filter(|x| r.resources.is_empty() || r.resources.contains(&x.name))
            .filter(|x| r.nodes.is_empty() || r.nodes.contains(&x.node))
            .map(|x| {
                let n = rt.node(&x.node);
                let d = c.definitions.get(&x.name);
                let sizes: Vec<(u32, u64)> = d
                    .map(|d| d.volumes.values().map(|v| (v.number, v.size)).collect())
                    .unwrap_or_default();
                view::resource(
                    x,
                    d.map_or(0, |d| d.port),
                    n.online(),
                    n.resource(&x.name),
                    &sizes,
                )
            })
            .collect();
        Ok(Response::new(pb::ResourceListReply { resources }))
    }

    async fn resource_delete(&self, req: Request<pb::ResourceRef>) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        self.change(format!("resource delete {} {}", r.node, r.resource), move |c| {
            ops::resource_delete(c, &r.resource, &r.node)
        })
        .await
    }

    async fn resource_set_role(
        &self,
        req: Request<pb::ResourceSetRoleRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let verb = if r.primary { "primary" } else { "secondary" };
        let context = format!("resource {verb} {} {}", r.node, r.resource);
        let ctl = self.ctl()?;
        let known = ctl
            .cluster()
            .resources
            .contains_key(&(r.resource.clone(), r.node.clone()));
        if !known {
            let e = ApiError::NotFound {
                kind: "resource",
                name: format!("{} on node {}", r.resource, r.node),
                hint: String::new(),
            };
            return Err(self.fail(&context, e).await);
        }
        let Some(mut client) = ctl.runtime().node(&r.node).client else {
            let e = ApiError::Agent {
                node: r.node.clone(),
                message: "is OFFLINE".into(),
            };
            return Err(self.fail(&context, e).await);
        };
        match client
            .set_role(SetRoleRequest {
                resource: r.resource.clone(),
                primary: r.primary,
                force: r.force,
            })
            .await
        {
            Ok(reply) => {
                let reply = reply.into_inner();
                // `resource list` right after shows the new role and device, not the last snapshot.
                if let Some(state) = reply.state {
                    ctl.set_node_state(&r.node, state);
                }
                Ok(Response::new(pb::Reply {
                    messages: vec![format!("SUCCESS: {}: {}", r.node, reply.message)],
                }))
            }
            Err(s) => {
                let e = ApiError::Agent {
                    node: r.node,
                    message: s.message().to_owned(),
                };
                Err(self.fail(&context, e).await)
            }
        }
    }

    async fn volume_list(
        &self,
        req: Request<pb::ResourceListRequest>,
    ) -> Result<Response<pb::VolumeListReply>, Status> {
        let list = self.resource_list(req).await?.into_inner();
        Ok(Response::new(pb::VolumeListReply {
            volumes: list.resources.into_iter().flat_map(|r| r.volumes).collect(),
        }))
    }

    async fn property_set(
        &self,
        req: Request<pb::PropertySetRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        let r = req.into_inner();
        let t = r.target.unwrap_or_default();
        let set = r.set.into_iter().collect();
        let context = format!("{} set-property {}", t.kind, t.name);
        self.change(context, move |c| {
            ops::props_set(c, &t.kind, &t.name, &t.node, &set, &r.delete)
        })
        .await
    }

    async fn property_list(
        &self,
        req: Request<pb::PropertyTarget>,
    ) -> Result<Response<pb::PropertyListReply>, Status> {
        let t = req.into_inner();
        let ctl = self.ctl()?;
        let props = property_list_of(&ctl.cluster(), &t);
        match props {
            Ok(props) => Ok(Response::new(pb::PropertyListReply { props })),
            Err(e) => Err(self.fail("property list", e).await),
        }
    }

    async fn error_report_list(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::ErrorReportListReply>, Status> {
        let ctl = self.ctl()?;
        let reports = match ctl.store().reports().await {
            Ok(r) => r,
            Err(e) => return Err(self.fail("error-reports list", e.into()).await),
        };
        Ok(Response::new(pb::ErrorReportListReply {
            reports: reports.into_iter().map(report_pb).collect(),
        }))
    }

    async fn error_report_show(
        &self,
        req: Request<pb::NameRef>,
    ) -> Result<Response<pb::ErrorReport>, Status> {
        let id = req.into_inner().name;
        let ctl = self.ctl()?;
        let reports = ctl
            .store()
            .reports()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match reports.into_iter().find(|r| r.id == id) {
            Some(r) => Ok(Response::new(report_pb(r))),
            None => Err(Status::not_found(format!(
                "error report {id} does not exist (see error-reports list)"
            ))),
        }
    }
}

fn property_list_of(
    c: &crate::cluster::Cluster,
    t: &pb::PropertyTarget,
) -> Result<Vec<pb::Property>, ApiError> {
    let not_found = |kind: &'static str| ApiError::NotFound {
        kind,
        name: t.name.clone(),
        hint: String::new(),
    };
    let layers: Result<Vec<(&str, &crate::model::Props)>, ApiError> = match t.kind.as_str() {
        "controller" => Ok(vec![("controller", &c.props)]),
        "node" => c
            .nodes
            .get(&t.name)
            .map(|n| vec![("node", &n.props)])
            .ok_or_else(|| not_found("node")),
        "storage-pool" => c
            .pools
            .get(&(t.node.clone(), t.name.clone()))
            .map(|p| vec![("storage-pool", &p.props)])
            .ok_or_else(|| not_found("storage pool")),
        "resource-group" => c
            .groups
            .get(&t.name)
            .map(|g| vec![("resource-group", &g.props)])
            .ok_or_else(|| not_found("resource group")),
        "resource-definition" => c
            .definitions
            .get(&t.name)
            .map(|d| {
                let mut l = vec![("controller", &c.props)];
                if let Some(g) = c.groups.get(&d.group) {
                    l.push(("resource-group", &g.props));
                }
                l.push(("resource-definition", &d.props));
                l
            })
            .ok_or_else(|| not_found("resource definition")),
        "resource" => match (
            c.resources.get(&(t.name.clone(), t.node.clone())),
            c.definitions.get(&t.name),
        ) {
            (Some(r), Some(d)) => {
                let mut l = vec![("controller", &c.props)];
                if let Some(g) = c.groups.get(&d.group) {
                    l.push(("resource-group", &g.props));
                }
                l.push(("resource-definition", &d.props));
                l.push(("resource", &r.props));
                Ok(l)
            }
            _ => Err(not_found("resource")),
        },
        other => Err(ApiError::Invalid(format!("unknown object kind {other:?}"))),
    };
    layers.map(|layers| {
        effective(&layers)
            .into_iter()
            .map(|(key, (value, source))| pb::Property {
                key,
                value,
                source: source.to_owned(),
            })
            .collect()
    })
}

fn report_pb(r: crate::reports::ErrorReport) -> pb::ErrorReport {
    pb::ErrorReport {
        id: r.id,
        time: r.time,
        origin: r.origin,
        context: r.context,
        message: r.message,
        details: r.details,
    }
}
