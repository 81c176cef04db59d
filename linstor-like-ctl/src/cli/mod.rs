//! The `replbd` command line: parse ([`args`]), find the active controller ([`client`]), call it,
//! print LINSTOR's tables ([`table`], [`render`]) or JSON with `-m`.
//!
//! Exit status: 0 success; 1 the controller refused the request or a node reported an error
//! (every error line names the cause and, for the controller's errors, an error report id);
//! 2 bad usage; 3 no controller could be reached.

pub mod args;
pub mod client;
pub mod render;
pub mod table;
pub mod wait;

use std::collections::HashMap;
use std::io::Write;

use args::{
    Cli, ControllerVerb, DefinitionVerb, GroupVerb, NodeVerb, Noun, PlacementArgs, PoolVerb, PropArgs,
    ReportVerb, ResourceVerb, VolumeDefinitionVerb, VolumeVerb,
};
use replbd_proto::controller as pb;
use replbd_proto::controller::controller_client::ControllerClient;
use tonic::transport::Channel;

use crate::model::props::aux_key;
use crate::model::size;

/// A failed command: what to print and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// The message (printed after `ERROR: `).
    pub message: String,
    /// The exit status.
    pub code: u8,
}

impl Failure {
    /// A failure with exit status 1.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        Failure::new(s.message().to_owned())
    }
}

/// Writes `text` to standard output.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = o.write_all(b"\n");
    }
    let _ = o.flush();
}

fn parse_size(text: &str) -> Result<u64, Failure> {
    let bytes = size::parse(text).map_err(Failure::new)?;
    size::check_volume(bytes).map_err(Failure::new)?;
    Ok(bytes)
}

fn placement(p: PlacementArgs, place_count: Option<u32>) -> pb::PlacementSpec {
    pb::PlacementSpec {
        place_count: place_count.unwrap_or(0),
        storage_pools: p.storage_pool,
        replicas_on_same: p.replicas_on_same,
        replicas_on_different: p.replicas_on_different,
        do_not_place_with: p.do_not_place_with,
        diskless_on_remaining: p.diskless_on_remaining,
    }
}

fn prop_request(kind: &str, name: &str, node: &str, p: PropArgs) -> pb::PropertySetRequest {
    let key = if p.aux { aux_key(&p.key) } else { p.key };
    let (set, delete) = match p.value {
        Some(v) => (HashMap::from([(key, v)]), Vec::new()),
        None => (HashMap::new(), vec![key]),
    };
    pb::PropertySetRequest {
        target: Some(pb::PropertyTarget {
            kind: kind.into(),
            name: name.into(),
            node: node.into(),
            volume: 0,
        }),
        set: set.into_iter().collect(),
        delete,
    }
}

/// Prints a change's reply; any `ERROR:` line fails the command.
fn reply(json: bool, r: pb::Reply) -> Result<(), Failure> {
    if json {
        out(&serde_json::json!({ "messages": r.messages }).to_string());
    } else {
        for m in &r.messages {
            out(m);
        }
    }
    let errors = r.messages.iter().filter(|m| m.starts_with("ERROR")).count();
    if errors > 0 {
        return Err(Failure::new(format!(
            "{errors} part(s) of the request failed (see above)"
        )));
    }
    Ok(())
}

/// Runs a parsed command line (all but `demo`).
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.machine_readable;
    let tls = client::Tls {
        files: match (cli.tls_cert, cli.tls_key, cli.tls_ca) {
            (Some(c), Some(k), Some(a)) => Some((c, k, a)),
            (None, None, None) => None,
            _ => {
                return Err(Failure::new(
                    "TLS needs all of --tls-cert, --tls-key and --tls-ca",
                ));
            }
        },
        server_name: cli.tls_server_name,
    };
    let mut c: ControllerClient<Channel> =
        client::connect(&cli.controllers, &tls)
            .await
            .map_err(|e| Failure {
                message: e.to_string(),
                code: 3,
            })?;
    match cli.command {
        Noun::Demo(_) => Err(Failure::new("demo is run by the binary")),
        Noun::Node { verb } => match verb {
            NodeVerb::Create {
                name,
                address,
                node_type,
                port,
            } => reply(
                json,
                c.node_create(pb::NodeCreateRequest {
                    name,
                    node_type,
                    address,
                    port: u32::from(port),
                    props: Default::default(),
                })
                .await?
                .into_inner(),
            ),
            NodeVerb::List => {
                render::nodes(json, &c.node_list(pb::Empty {}).await?.into_inner());
                Ok(())
            }
            NodeVerb::Delete { name } => reply(json, c.node_delete(pb::NodeRef { name }).await?.into_inner()),
            NodeVerb::Lost { name } => reply(json, c.node_lost(pb::NodeRef { name }).await?.into_inner()),
            NodeVerb::Evacuate { name } => {
                reply(json, c.node_evacuate(pb::NodeRef { name }).await?.into_inner())
            }
            NodeVerb::Restore { name } => {
                reply(json, c.node_restore(pb::NodeRef { name }).await?.into_inner())
            }
            NodeVerb::SetProperty(p) => {
                let name = p.name.clone();
                reply(
                    json,
                    c.property_set(prop_request("node", &name, "", p))
                        .await?
                        .into_inner(),
                )
            }
            NodeVerb::ListProperties { name } => {
                let t = pb::PropertyTarget {
                    kind: "node".into(),
                    name,
                    ..Default::default()
                };
                render::props(json, &c.property_list(t).await?.into_inner());
                Ok(())
            }
        },
        Noun::StoragePool { verb } => match verb {
            PoolVerb::Create {
                driver,
                node,
                name,
                backing,
            } => reply(
                json,
                c.storage_pool_create(pb::StoragePoolCreateRequest {
                    node,
                    name,
                    driver,
                    backing: backing.unwrap_or_default(),
                    props: Default::default(),
                })
                .await?
                .into_inner(),
            ),
            PoolVerb::List => {
                render::pools(json, &c.storage_pool_list(pb::Empty {}).await?.into_inner());
                Ok(())
            }
            PoolVerb::Delete { node, name } => reply(
                json,
                c.storage_pool_delete(pb::StoragePoolRef { node, name })
                    .await?
                    .into_inner(),
            ),
        },
        Noun::ResourceGroup { verb } => match verb {
            GroupVerb::Create {
                name,
                place_count,
                description,
                placement: p,
            } => reply(
                json,
                c.resource_group_create(pb::ResourceGroupRequest {
                    name,
                    description,
                    placement: Some(placement(p, place_count)),
                    props: Default::default(),
                })
                .await?
                .into_inner(),
            ),
            GroupVerb::Modify {
                name,
                place_count,
                description,
                placement: p,
            } => reply(
                json,
                c.resource_group_modify(pb::ResourceGroupRequest {
                    name,
                    description,
                    placement: Some(placement(p, place_count)),
                    props: Default::default(),
                })
                .await?
                .into_inner(),
            ),
            GroupVerb::List => {
                render::groups(json, &c.resource_group_list(pb::Empty {}).await?.into_inner());
                Ok(())
            }
            GroupVerb::Delete { name } => reply(
                json,
                c.resource_group_delete(pb::NameRef { name }).await?.into_inner(),
            ),
            GroupVerb::SpawnResources {
                group,
                name,
                sizes,
                definition_only,
            } => {
                let sizes = sizes
                    .iter()
                    .map(|s| parse_size(s))
                    .collect::<Result<Vec<_>, _>>()?;
                reply(
                    json,
                    c.resource_group_spawn(pb::SpawnRequest {
                        group,
                        resource: name,
                        sizes,
                        definitions_only: definition_only,
                    })
                    .await?
                    .into_inner(),
                )
            }
            GroupVerb::SetProperty(p) => {
                let name = p.name.clone();
                reply(
                    json,
                    c.property_set(prop_request("resource-group", &name, "", p))
                        .await?
                        .into_inner(),
                )
            }
        },
        Noun::ResourceDefinition { verb } => match verb {
            DefinitionVerb::Create {
                name,
                resource_group,
                port,
            } => reply(
                json,
                c.resource_definition_create(pb::ResourceDefinitionCreateRequest {
                    name,
                    group: resource_group,
                    port: u32::from(port),
                    props: Default::default(),
                })
                .await?
                .into_inner(),
            ),
            DefinitionVerb::List => {
                render::definitions(
                    json,
                    &c.resource_definition_list(pb::Empty {}).await?.into_inner(),
                );
                Ok(())
            }
            DefinitionVerb::Delete { name } => reply(
                json,
                c.resource_definition_delete(pb::NameRef { name })
                    .await?
                    .into_inner(),
            ),
            DefinitionVerb::SetProperty(p) => {
                let name = p.name.clone();
                reply(
                    json,
                    c.property_set(prop_request("resource-definition", &name, "", p))
                        .await?
                        .into_inner(),
                )
            }
            DefinitionVerb::ListProperties { name } => {
                let t = pb::PropertyTarget {
                    kind: "resource-definition".into(),
                    name,
                    ..Default::default()
                };
                render::props(json, &c.property_list(t).await?.into_inner());
                Ok(())
            }
        },
        Noun::VolumeDefinition { verb } => match verb {
            VolumeDefinitionVerb::Create {
                resource,
                size,
                vlmnr,
                minor,
            } => {
                let size_bytes = parse_size(&size)?;
                if minor == Some(0) {
                    return Err(Failure::new(
                        "--minor 0 is not a device minor: give 1 or more, or leave it out for the next free one",
                    ));
                }
                reply(
                    json,
                    c.volume_definition_create(pb::VolumeDefinitionCreateRequest {
                        resource,
                        size_bytes,
                        number: vlmnr.unwrap_or(0),
                        has_number: vlmnr.is_some(),
                        minor: minor.unwrap_or(0),
                    })
                    .await?
                    .into_inner(),
                )
            }
            VolumeDefinitionVerb::List => {
                render::volume_definitions(json, &c.volume_definition_list(pb::Empty {}).await?.into_inner());
                Ok(())
            }
            VolumeDefinitionVerb::SetSize {
                resource,
                number,
                size,
            } => {
                let size_bytes = parse_size(&size)?;
                reply(
                    json,
                    c.volume_definition_set_size(pb::VolumeDefinitionSetSizeRequest {
                        resource,
                        number,
                        size_bytes,
                    })
                    .await?
                    .into_inner(),
                )
            }
            VolumeDefinitionVerb::Delete { resource, number } => reply(
                json,
                c.volume_definition_delete(pb::VolumeDefinitionRef { resource, number })
                    .await?
                    .into_inner(),
            ),
        },
        Noun::Resource { verb } => resource(json, &mut c, verb).await,
        Noun::Volume { verb } => match verb {
            VolumeVerb::List { resources, nodes } => {
                let v = c
                    .volume_list(pb::ResourceListRequest { resources, nodes })
                    .await?
                    .into_inner();
                render::volumes(json, &v);
                Ok(())
            }
        },
        Noun::ErrorReports { verb } => match verb {
            ReportVerb::List => {
                render::reports(json, &c.error_report_list(pb::Empty {}).await?.into_inner());
                Ok(())
            }
            ReportVerb::Show { id } => {
                render::report(
                    json,
                    &c.error_report_show(pb::NameRef { name: id }).await?.into_inner(),
                );
                Ok(())
            }
        },
        Noun::Controller { verb } => match verb {
            ControllerVerb::Version => {
                let v = c.version(pb::Empty {}).await?.into_inner();
                if json {
                    out(&serde_json::json!({"version": v.version, "store": v.store, "store_location": v.store_location, "controller_id": v.controller_id}).to_string());
                } else {
                    out(&format!(
                        "replbd-controller {} (store: {} at {}; id {})",
                        v.version, v.store, v.store_location, v.controller_id
                    ));
                }
                Ok(())
            }
            ControllerVerb::SetProperty { key, value } => {
                let p = PropArgs {
                    name: String::new(),
                    key,
                    value,
                    aux: false,
                };
                reply(
                    json,
                    c.property_set(prop_request("controller", "", "", p))
                        .await?
                        .into_inner(),
                )
            }
            ControllerVerb::ListProperties => {
                let t = pb::PropertyTarget {
                    kind: "controller".into(),
                    ..Default::default()
                };
                render::props(json, &c.property_list(t).await?.into_inner());
                Ok(())
            }
        },
    }
}

async fn resource(json: bool, c: &mut ControllerClient<Channel>, verb: ResourceVerb) -> Result<(), Failure> {
    match verb {
        ResourceVerb::Create {
            mut args,
            auto_place,
            diskless,
            placement: p,
        } => {
            let Some(resource) = args.pop() else {
                return Err(Failure::new("name the resource definition"));
            };
            let mut req = pb::ResourceCreateRequest {
                resource,
                nodes: args,
                storage_pool: p.storage_pool.first().cloned().unwrap_or_default(),
                diskless,
                ..Default::default()
            };
            if let Some(a) = auto_place {
                if !req.nodes.is_empty() {
                    return Err(Failure::new("give either nodes or --auto-place, not both"));
                }
                let (additional, n) = match a.strip_prefix('+') {
                    Some(n) => (true, n),
                    None => (false, a.as_str()),
                };
                req.auto_place = true;
                req.auto_place_additional = additional;
                req.place_count =
                    n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Failure::new(format!("--auto-place {a:?}: give a count like 3 or +1"))
                    })?;
                req.placement = Some(placement(p, None));
            } else if req.nodes.is_empty() {
                return Err(Failure::new(
                    "name the nodes (resource create NODE... RESOURCE) or use --auto-place N",
                ));
            }
            reply(json, c.resource_create(req).await?.into_inner())
        }
        ResourceVerb::List { resources, nodes } => {
            let l = c
                .resource_list(pb::ResourceListRequest { resources, nodes })
                .await?
                .into_inner();
            render::resources(json, &l);
            Ok(())
        }
        ResourceVerb::Delete { node, resource } => reply(
            json,
            c.resource_delete(pb::ResourceRef { node, resource })
                .await?
                .into_inner(),
        ),
        ResourceVerb::Primary {
            node,
            resource,
            force,
        } => reply(
            json,
            c.resource_set_role(pb::ResourceSetRoleRequest {
                node,
                resource,
                primary: true,
                force,
            })
            .await?
            .into_inner(),
        ),
        ResourceVerb::Secondary { node, resource } => reply(
            json,
            c.resource_set_role(pb::ResourceSetRoleRequest {
                node,
                resource,
                primary: false,
                force: false,
            })
            .await?
            .into_inner(),
        ),
        ResourceVerb::WaitSync { resource, timeout } => {
            wait::until_synced(c, &resource, std::time::Duration::from_secs(timeout), !json).await
        }
        ResourceVerb::ListProperties { node, resource } => {
            let t = pb::PropertyTarget {
                kind: "resource".into(),
                name: resource,
                node,
                volume: 0,
            };
            render::props(json, &c.property_list(t).await?.into_inner());
            Ok(())
        }
    }
}
