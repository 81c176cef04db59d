//! The `replbd` command line: LINSTOR's nouns, verbs and abbreviations (`node list` = `n l`,
//! `resource-definition` = `rd`, `storage-pool` = `sp`, ...).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// replbd's cluster command line (LINSTOR-like).
#[derive(Parser, Debug)]
#[command(name = "replbd", version, about, propagate_version = true)]
pub struct Cli {
    /// Controllers to try, in order (comma separated HOST[:PORT]).
    #[arg(
        long,
        global = true,
        env = "REPLBD_CONTROLLERS",
        default_value = "127.0.0.1:3370"
    )]
    pub controllers: String,
    /// Print JSON instead of tables.
    #[arg(short = 'm', long = "machine-readable", global = true)]
    pub machine_readable: bool,
    /// TLS: the client certificate (PEM); needs --tls-key and --tls-ca.
    #[arg(long, global = true, env = "REPLBD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the client key.
    #[arg(long, global = true, env = "REPLBD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// TLS: the CA that signs the controllers' certificates.
    #[arg(long, global = true, env = "REPLBD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// TLS: the name the controllers' certificates are issued for (default: the host given).
    #[arg(long, global = true)]
    pub tls_server_name: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Noun,
}

/// The nouns.
#[derive(Subcommand, Debug)]
pub enum Noun {
    /// Nodes of the cluster.
    #[command(alias = "n")]
    Node {
        /// The verb.
        #[command(subcommand)]
        verb: NodeVerb,
    },
    /// Storage pools on nodes.
    #[command(alias = "sp")]
    StoragePool {
        /// The verb.
        #[command(subcommand)]
        verb: PoolVerb,
    },
    /// Resource groups: placement templates.
    #[command(alias = "rg")]
    ResourceGroup {
        /// The verb.
        #[command(subcommand)]
        verb: GroupVerb,
    },
    /// Resource definitions.
    #[command(alias = "rd")]
    ResourceDefinition {
        /// The verb.
        #[command(subcommand)]
        verb: DefinitionVerb,
    },
    /// Volume definitions.
    #[command(alias = "vd")]
    VolumeDefinition {
        /// The verb.
        #[command(subcommand)]
        verb: VolumeDefinitionVerb,
    },
    /// Resources: definitions placed on nodes.
    #[command(alias = "r")]
    Resource {
        /// The verb.
        #[command(subcommand)]
        verb: ResourceVerb,
    },
    /// Volumes of resources.
    #[command(alias = "v")]
    Volume {
        /// The verb.
        #[command(subcommand)]
        verb: VolumeVerb,
    },
    /// Error reports.
    #[command(alias = "err", alias = "error-report")]
    ErrorReports {
        /// The verb.
        #[command(subcommand)]
        verb: ReportVerb,
    },
    /// The controller itself.
    #[command(alias = "c")]
    Controller {
        /// The verb.
        #[command(subcommand)]
        verb: ControllerVerb,
    },
    /// Run a whole cluster on this machine: a controller, three nodes, a replicated volume, data
    /// written and resynced after a node outage.
    Demo(DemoArgs),
}

/// `replbd demo` options.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Leave the cluster running and print how to use it.
    #[arg(long)]
    pub keep: bool,
    /// Work in this directory (default: a new temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The volume size.
    #[arg(long, default_value = "64MiB")]
    pub size: String,
}

/// `node` verbs.
#[derive(Subcommand, Debug)]
pub enum NodeVerb {
    /// Register a node: NAME ADDRESS.
    #[command(alias = "c")]
    Create {
        /// The node's name.
        name: String,
        /// Its address (the agent's and the replication address).
        address: String,
        /// satellite (default), combined, controller, auxiliary.
        #[arg(long, default_value = "satellite")]
        node_type: String,
        /// The agent's port.
        #[arg(long, default_value_t = 3366)]
        port: u16,
    },
    /// List nodes.
    #[command(alias = "l", alias = "ls")]
    List,
    /// Delete a node without resources.
    #[command(alias = "d")]
    Delete {
        /// The node.
        name: String,
    },
    /// Forget a node that will not come back, with its resources.
    Lost {
        /// The node.
        name: String,
    },
    /// Move every resource off a node.
    Evacuate {
        /// The node.
        name: String,
    },
    /// Let an evicted or evacuated node take resources again.
    Restore {
        /// The node.
        name: String,
    },
    /// Set (or with no value delete) a property.
    #[command(alias = "sp")]
    SetProperty(PropArgs),
    /// List properties.
    #[command(alias = "lp")]
    ListProperties {
        /// The node.
        name: String,
    },
}

/// Setting a property of a named object.
#[derive(Args, Debug)]
pub struct PropArgs {
    /// The object.
    pub name: String,
    /// The key.
    pub key: String,
    /// The value (omit to delete the property).
    pub value: Option<String>,
    /// The key is an Aux/ label.
    #[arg(long)]
    pub aux: bool,
}

/// `storage-pool` verbs.
#[derive(Subcommand, Debug)]
pub enum PoolVerb {
    /// Create a pool: DRIVER NODE NAME [BACKING] (file: a directory; lvm: a VG; lvmthin: VG/pool;
    /// zfs, zfsthin: a zpool; diskless: nothing).
    #[command(alias = "c")]
    Create {
        /// file, filethin, lvm, lvmthin, zfs, zfsthin, diskless.
        driver: String,
        /// The node.
        node: String,
        /// The pool's name.
        name: String,
        /// The backing pool.
        backing: Option<String>,
    },
    /// List pools.
    #[command(alias = "l", alias = "ls")]
    List,
    /// Delete a pool: NODE NAME.
    #[command(alias = "d")]
    Delete {
        /// The node.
        node: String,
        /// The pool.
        name: String,
    },
}

/// Placement options of groups and `resource create`.
#[derive(Args, Debug, Default)]
pub struct PlacementArgs {
    /// Only these storage pools.
    #[arg(long = "storage-pool", short = 's')]
    pub storage_pool: Vec<String>,
    /// Replicas on nodes sharing this Aux property (`zone` or `zone=a`).
    #[arg(long)]
    pub replicas_on_same: Vec<String>,
    /// Replicas on nodes differing in this Aux property.
    #[arg(long)]
    pub replicas_on_different: Vec<String>,
    /// Never on a node hosting this resource.
    #[arg(long)]
    pub do_not_place_with: Vec<String>,
    /// A diskless replica on every other node.
    #[arg(long)]
    pub diskless_on_remaining: bool,
}

/// `resource-group` verbs.
#[derive(Subcommand, Debug)]
pub enum GroupVerb {
    /// Create a group.
    #[command(alias = "c")]
    Create {
        /// The name.
        name: String,
        /// Diskful replicas of its resources.
        #[arg(long)]
        place_count: Option<u32>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Placement.
        #[command(flatten)]
        placement: PlacementArgs,
    },
    /// Change a group's settings.
    #[command(alias = "m")]
    Modify {
        /// The name.
        name: String,
        /// Diskful replicas of its resources.
        #[arg(long)]
        place_count: Option<u32>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Placement.
        #[command(flatten)]
        placement: PlacementArgs,
    },
    /// List groups.
    #[command(alias = "l", alias = "ls")]
    List,
    /// Delete a group.
    #[command(alias = "d")]
    Delete {
        /// The name.
        name: String,
    },
    /// Create a resource definition with volumes from the group and place it: GROUP NAME SIZE...
    #[command(alias = "spawn", alias = "s")]
    SpawnResources {
        /// The group.
        group: String,
        /// The new resource definition.
        name: String,
        /// Volume sizes (64MiB, 10G, ...).
        #[arg(required = true)]
        sizes: Vec<String>,
        /// Only create the definitions.
        #[arg(long)]
        definition_only: bool,
    },
    /// Set (or with no value delete) a property.
    #[command(alias = "sp")]
    SetProperty(PropArgs),
}

/// `resource-definition` verbs.
#[derive(Subcommand, Debug)]
pub enum DefinitionVerb {
    /// Create a definition.
    #[command(alias = "c")]
    Create {
        /// The name.
        name: String,
        /// Its group.
        #[arg(long, default_value = "")]
        resource_group: String,
        /// Its replication port (default: the next free one from 7000).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// List definitions.
    #[command(alias = "l", alias = "ls")]
    List,
    /// Delete a definition and all its resources.
    #[command(alias = "d")]
    Delete {
        /// The name.
        name: String,
    },
    /// Set (or with no value delete) a property.
    #[command(alias = "sp")]
    SetProperty(PropArgs),
    /// List properties, with where each value comes from.
    #[command(alias = "lp")]
    ListProperties {
        /// The name.
        name: String,
    },
}

/// `volume-definition` verbs.
#[derive(Subcommand, Debug)]
pub enum VolumeDefinitionVerb {
    /// Create a volume definition: RESOURCE SIZE.
    #[command(alias = "c")]
    Create {
        /// The resource definition.
        resource: String,
        /// The size (64MiB, 10G, ...).
        size: String,
        /// The volume number.
        #[arg(long)]
        vlmnr: Option<u32>,
        /// The device minor: the volume is /dev/ublkbMINOR where it is Primary (default: the
        /// next free one of the controller property MinorNrAutoRange, 1000-49999).
        #[arg(long)]
        minor: Option<u32>,
    },
    /// List volume definitions.
    #[command(alias = "l", alias = "ls")]
    List,
    /// Change a volume's size: RESOURCE VOLNR SIZE.
    SetSize {
        /// The resource definition.
        resource: String,
        /// The volume number.
        number: u32,
        /// The new size.
        size: String,
    },
    /// Delete a volume definition: RESOURCE VOLNR.
    #[command(alias = "d")]
    Delete {
        /// The resource definition.
        resource: String,
        /// The volume number.
        number: u32,
    },
}

/// `resource` verbs.
#[derive(Subcommand, Debug)]
pub enum ResourceVerb {
    /// Create resources: NODE... RESOURCE, or RESOURCE --auto-place N|+N.
    #[command(alias = "c")]
    Create {
        /// Nodes, then the resource definition.
        #[arg(required = true)]
        args: Vec<String>,
        /// Place this many diskful replicas in total, or +N more.
        #[arg(long, allow_hyphen_values = true)]
        auto_place: Option<String>,
        /// Diskless on the named nodes.
        #[arg(long, alias = "drbd-diskless")]
        diskless: bool,
        /// Placement.
        #[command(flatten)]
        placement: PlacementArgs,
    },
    /// List resources.
    #[command(alias = "l", alias = "ls")]
    List {
        /// Only these resources.
        #[arg(short = 'r', long = "resources")]
        resources: Vec<String>,
        /// Only on these nodes.
        #[arg(short = 'n', long = "nodes")]
        nodes: Vec<String>,
    },
    /// Delete a resource: NODE RESOURCE.
    #[command(alias = "d")]
    Delete {
        /// The node.
        node: String,
        /// The resource.
        resource: String,
    },
    /// Promote a resource on a node (it then serves its volume there): NODE RESOURCE.
    Primary {
        /// The node.
        node: String,
        /// The resource.
        resource: String,
        /// Promote data that is not UpToDate.
        #[arg(long)]
        force: bool,
    },
    /// Demote a resource on a node: NODE RESOURCE.
    Secondary {
        /// The node.
        node: String,
        /// The resource.
        resource: String,
    },
    /// Wait until every replica of a resource is UpToDate (diskless ones up), showing progress.
    WaitSync {
        /// The resource.
        resource: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// List a resource's properties with where each value comes from: NODE RESOURCE.
    #[command(alias = "lp")]
    ListProperties {
        /// The node.
        node: String,
        /// The resource.
        resource: String,
    },
}

/// `volume` verbs.
#[derive(Subcommand, Debug)]
pub enum VolumeVerb {
    /// List volumes.
    #[command(alias = "l", alias = "ls")]
    List {
        /// Only these resources.
        #[arg(short = 'r', long = "resources")]
        resources: Vec<String>,
        /// Only on these nodes.
        #[arg(short = 'n', long = "nodes")]
        nodes: Vec<String>,
    },
}

/// `error-reports` verbs.
#[derive(Subcommand, Debug)]
pub enum ReportVerb {
    /// List reports.
    #[command(alias = "l", alias = "ls")]
    List,
    /// Show one report.
    #[command(alias = "s")]
    Show {
        /// Its id.
        id: String,
    },
}

/// `controller` verbs.
#[derive(Subcommand, Debug)]
pub enum ControllerVerb {
    /// The controller's version and store.
    #[command(alias = "v")]
    Version,
    /// Set (or with no value delete) a controller property: KEY [VALUE].
    #[command(alias = "sp")]
    SetProperty {
        /// The key.
        key: String,
        /// The value.
        value: Option<String>,
    },
    /// List controller properties.
    #[command(alias = "lp")]
    ListProperties,
}
