//! The isle specification.
//!
//! An isle is described by an OCI runtime [`Spec`] (the `config.json` of a
//! bundle), so that what `islander run` builds from its options is the same
//! thing containerd or podman will hand islander once it can act as their OCI
//! runtime. This module turns run options into that spec; the process and
//! rootfs stages only ever read the spec.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxIdMappingBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources, Mount, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// The host range that root in a `--userns` isle maps to: isle uid/gid 0..65536
/// are host uid/gid 100000..165536, the range `useradd` hands the first user in
/// `/etc/subuid` on Debian. Nothing on the host owns it.
pub const USERNS_HOST_BASE: u32 = 100_000;
pub const USERNS_SIZE: u32 = 65_536;

/// The path searched for the command when the caller gives no `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set: the bounding set of an unprivileged isle.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Kernel interfaces hidden from an unprivileged isle: files get `/dev/null`
/// bound over them, directories an empty read-only tmpfs.
pub const MASKED_PATHS: [&str; 13] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/kernel/debug",
    "/sys/kernel/tracing",
];

/// Kernel interfaces an unprivileged isle may read but never write.
pub const READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// What `islander run` asks for, already validated.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub hostname: String,
    pub tty: bool,
    pub userns: bool,
    pub privileged: bool,
    pub resources: LinuxResources,
}

/// Builds the OCI spec of an isle. `rootfs` is the merged overlay directory.
pub fn build(opts: &RunOptions, rootfs: PathBuf) -> Result<Spec, oci_spec::OciSpecError> {
    let all_caps: HashSet<Capability> = if opts.privileged {
        all_capabilities()
    } else {
        DEFAULT_CAPABILITIES.into_iter().collect()
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(all_caps.clone())
        .effective(all_caps.clone())
        .permitted(all_caps.clone())
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;

    let mut env = opts.env.clone();
    let mut ensure_env = |key: &str, value: &str| {
        let prefix = format!("{key}=");
        if !env.iter().any(|e| e.starts_with(&prefix)) {
            env.push(format!("{prefix}{value}"));
        }
    };
    ensure_env("PATH", DEFAULT_PATH);
    ensure_env("HOSTNAME", &opts.hostname);
    ensure_env("HOME", "/root");
    if opts.tty {
        ensure_env("TERM", "xterm");
    }

    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(opts.args.clone())
        .env(env)
        .cwd(opts.cwd.clone())
        .capabilities(capabilities)
        .no_new_privileges(!opts.privileged)
        .build()?;

    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Mount)?,
        namespace(LinuxNamespaceType::Pid)?,
        namespace(LinuxNamespaceType::Uts)?,
        namespace(LinuxNamespaceType::Ipc)?,
        namespace(LinuxNamespaceType::Network)?,
    ];
    let mut linux = LinuxBuilder::default()
        .resources(opts.resources.clone())
        .rootfs_propagation("private");
    if opts.userns {
        namespaces.push(namespace(LinuxNamespaceType::User)?);
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(USERNS_HOST_BASE)
            .size(USERNS_SIZE)
            .build()?;
        linux = linux.uid_mappings(vec![map]).gid_mappings(vec![map]);
    }
    let (masked, readonly): (&[&str], &[&str]) =
        if opts.privileged { (&[], &[]) } else { (&MASKED_PATHS, &READONLY_PATHS) };
    linux = linux
        .masked_paths(masked.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .readonly_paths(readonly.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    let linux = linux.namespaces(namespaces).build()?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(rootfs).readonly(false).build()?)
        .hostname(opts.hostname.clone())
        .process(process)
        .mounts(default_mounts(opts)?)
        .linux(linux)
        .build()
}

fn namespace(typ: LinuxNamespaceType) -> Result<LinuxNamespace, oci_spec::OciSpecError> {
    LinuxNamespaceBuilder::default().typ(typ).build()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
}

/// The kernel file systems every isle gets, in mount order.
fn default_mounts(opts: &RunOptions) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let sys_mode = if opts.privileged { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        )?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", sys_mode])?,
    ])
}

fn all_capabilities() -> HashSet<Capability> {
    // Every capability the running kernel knows, named the way the OCI spec
    // names them; unknown ones (a newer kernel) are simply left out.
    caps::all()
        .into_iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok())
        .collect()
}

/// The capabilities of a spec's process as the `caps` crate names them.
pub fn to_caps(set: &HashSet<Capability>) -> caps::CapsHashSet {
    set.iter()
        .filter_map(|c| {
            let name = serde_json::to_value(c).ok()?;
            name.as_str()?.parse::<caps::Capability>().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RunOptions {
        RunOptions {
            args: vec!["/bin/true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            hostname: "abc".into(),
            tty: false,
            userns: false,
            privileged: false,
            resources: LinuxResources::default(),
        }
    }

    #[test]
    fn unprivileged_spec_has_docker_defaults() {
        let spec = build(&opts(), "/r".into()).unwrap();
        let process = spec.process().as_ref().unwrap();
        let bounding = process.capabilities().as_ref().unwrap().bounding().as_ref().unwrap();
        assert_eq!(bounding.len(), 14);
        assert_eq!(to_caps(bounding).len(), 14, "every default capability maps to a caps name");
        assert_eq!(process.no_new_privileges(), Some(true));
        let env = process.env().as_ref().unwrap();
        assert!(env.contains(&"PATH=/bin".to_string()), "the caller's PATH wins");
        assert!(env.contains(&"HOSTNAME=abc".to_string()));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_string()));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 5);
        assert!(linux.uid_mappings().is_none());
    }

    #[test]
    fn privileged_lifts_hardening() {
        let mut o = opts();
        o.privileged = true;
        let spec = build(&o, "/r".into()).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert!(process.capabilities().as_ref().unwrap().bounding().as_ref().unwrap().len() > 14);
        assert_eq!(process.no_new_privileges(), Some(false));
        assert!(spec.linux().as_ref().unwrap().masked_paths().as_ref().unwrap().is_empty());
    }

    #[test]
    fn userns_maps_root_to_the_documented_range() {
        let mut o = opts();
        o.userns = true;
        let spec = build(&o, "/r".into()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let map = linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!((map.container_id(), map.host_id(), map.size()), (0, 100_000, 65_536));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 6);
    }
}
