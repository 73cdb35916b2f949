//! [`MemoryCgroup`]: the memory cgroup this process is charged to, cgroup v1 or v2.
//!
//! A container's memory limit is not the machine's memory: the kernel kills a process
//! whose cgroup passes its hard limit however much the machine has free. This module
//! finds that cgroup and reads what it charges and where its limits are.
//!
//! **Finding it.** [`MemoryCgroup::detect`] reads `/proc/self/cgroup` (lines
//! `hierarchy-id:controllers:path`) and `/proc/self/mountinfo`. Under cgroup v2 the
//! process has one line `0::/path` and the hierarchy is a `cgroup2` mount; under v1 the
//! memory controller has its own hierarchy, the line whose controller list holds
//! `memory`, mounted as fstype `cgroup` with `memory` among the super options. A hybrid
//! machine mounts both; v2 is used only when its mount root's `cgroup.controllers` lists
//! `memory` (otherwise the v2 hierarchy charges nothing), else v1. The cgroup's
//! directory is the mount point plus the cgroup path less the mount's root (a container
//! often mounts only its own subtree); a path outside the mount's root (a cgroup
//! namespace) is taken as is under the mount point.
//!
//! **Limits.** A cgroup is held to its own limit and to every ancestor's, so
//! [`MemoryCgroup::limit`] takes the least over the cgroup and its ancestors up to the
//! mount point: v2 `memory.max` (the OOM line) and `memory.high` (past it the kernel
//! throttles and reclaims hard, which a governor should treat as the ceiling too); v1
//! `memory.limit_in_bytes`, and `memory.soft_limit_in_bytes` as a warning line. `max`
//! and v1's "no limit" (`9223372036854771712`, `PAGE_COUNTER_MAX` pages) read as none.
//!
//! **Usage.** The kernel charges a cgroup for more than its processes' anonymous
//! memory: page cache of the files they read and write, tmpfs and `/dev/shm` pages all
//! count. Clean inactive file pages are reclaimed before the OOM killer runs, so counting
//! them would report pressure that is not there (a process that read a large model once
//! would look full forever). [`MemoryCgroup::usage`] is therefore the charge less the
//! inactive file pages (`memory.current` − `inactive_file` on v2, `memory.usage_in_bytes`
//! − `total_inactive_file` on v1), the same working-set figure container runtimes report.
//! Active file pages, shmem and tmpfs stay counted: the kernel cannot drop them freely.
//!
//! Every reading goes back to the files (a container can be resized in place) with a few
//! small reads into stack buffers; nothing is cached but the paths.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Component, Path, PathBuf};

/// Which cgroup hierarchy charges the process's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CgroupVersion {
    /// The v1 memory controller's own hierarchy (`memory.limit_in_bytes` and friends).
    V1,
    /// The unified v2 hierarchy (`memory.max`, `memory.current`, ...).
    V2,
}

/// The tightest limit found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupLimit {
    /// The limit in bytes.
    pub bytes: u64,
    /// The file that set it, e.g. `"memory.max"`.
    pub file: &'static str,
    /// The cgroup whose file it is, as `/proc/self/cgroup` writes paths: the process's
    /// own or an ancestor's.
    pub cgroup: String,
}

/// The memory cgroup of this process: where it is, and its limits and charge read fresh
/// on every call. See the [module docs](self) for which numbers are used and why.
#[derive(Debug, Clone)]
pub struct MemoryCgroup {
    version: CgroupVersion,
    /// The process's cgroup path, as /proc/self/cgroup writes it.
    path: String,
    /// The process's cgroup directory.
    dir: PathBuf,
    /// Parent first, up to and including the mount point: each directory with its
    /// cgroup path.
    ancestors: Vec<(PathBuf, String)>,
}

impl MemoryCgroup {
    /// From /proc/self/cgroup and /proc/self/mountinfo; None when the process has no
    /// memory cgroup mounted (or the files cannot be read).
    pub fn detect() -> Option<MemoryCgroup> {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Self::from_proc(&cgroup, &mountinfo, Path::new("/"))
    }

    /// Pure: from the texts of /proc/self/cgroup and /proc/self/mountinfo; `root`
    /// prefixes every mount point (`Path::new("/")` for the real system; a temp dir in
    /// tests holding a fixture tree).
    ///
    /// Reads one file, the v2 mount's `cgroup.controllers`, to see whether v2 charges
    /// memory at all.
    pub fn from_proc(cgroup: &str, mountinfo: &str, root: &Path) -> Option<MemoryCgroup> {
        let mut v2_path = None;
        let mut v1_path = None;
        for line in cgroup.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                v2_path.get_or_insert(path);
            } else if controllers.split(',').any(|c| c == "memory") {
                v1_path.get_or_insert(path);
            }
        }
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();

        if let Some(path) = v2_path {
            let found = pick_mount(&mounts, path, |m| m.fstype == "cgroup2")
                .filter(|mount| {
                    let controllers = under(root, &mount.point).join("cgroup.controllers");
                    std::fs::read_to_string(controllers)
                        .is_ok_and(|text| text.split_ascii_whitespace().any(|c| c == "memory"))
                })
                .and_then(|mount| Self::at(CgroupVersion::V2, path, mount, root));
            if found.is_some() {
                return found;
            }
        }
        let path = v1_path?;
        let mount = pick_mount(&mounts, path, |m| {
            m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory")
        })?;
        Self::at(CgroupVersion::V1, path, mount, root)
    }

    /// The cgroup `path` under `mount`; None when the path climbs out of the mount
    /// (`..`: the process sits outside the cgroup namespace it sees).
    fn at(version: CgroupVersion, path: &str, mount: &Mount, root: &Path) -> Option<Self> {
        let relative = if mount.root == "/" {
            path
        } else {
            strip_path_prefix(path, &mount.root).unwrap_or(path)
        };
        let mut dir = under(root, &mount.point);
        let mut levels = vec![dir.clone()];
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            if part == ".." || part == "." {
                return None;
            }
            dir.push(part);
            levels.push(dir.clone());
        }
        // Each level up drops one component of the path, as it drops one of the dir.
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let ancestors = levels
            .into_iter()
            .rev()
            .skip(1)
            .enumerate()
            .map(|(up, dir)| {
                let kept = parts.len().saturating_sub(up + 1);
                (dir, format!("/{}", parts[..kept].join("/")))
            })
            .collect();
        Some(MemoryCgroup {
            version,
            path: path.to_owned(),
            dir,
            ancestors,
        })
    }

    /// Which hierarchy charges the process.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The cgroup's path as /proc/self/cgroup writes it, e.g. "/kubepods/pod1/abc".
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The process's cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tightest hard limit over this cgroup and every ancestor up to the mount root:
    /// v2 the least of `memory.max` and `memory.high`; v1 `memory.limit_in_bytes`. None
    /// when none is set.
    ///
    /// On a tie the cgroup nearest the process wins, and within one cgroup `memory.max`.
    pub fn limit(&self) -> Option<CgroupLimit> {
        match self.version {
            CgroupVersion::V2 => self.least(&["memory.max", "memory.high"]),
            CgroupVersion::V1 => self.least(&["memory.limit_in_bytes"]),
        }
    }

    /// v1 only: the least `memory.soft_limit_in_bytes` over the same cgroups (a warning
    /// line); None on v2 or when unset.
    pub fn soft_limit(&self) -> Option<CgroupLimit> {
        match self.version {
            CgroupVersion::V1 => self.least(&["memory.soft_limit_in_bytes"]),
            CgroupVersion::V2 => None,
        }
    }

    /// What the cgroup charges now, less the page cache the kernel can drop without
    /// writing anything: v2 `memory.current` minus `inactive_file` of `memory.stat`; v1
    /// `memory.usage_in_bytes` minus `total_inactive_file` (falling back to
    /// `inactive_file`). Saturating. None when unreadable.
    ///
    /// When only `memory.stat` cannot be read, nothing is subtracted: the charge is
    /// overstated rather than understated.
    pub fn usage(&self) -> Option<u64> {
        let (charge, inactive) = match self.version {
            CgroupVersion::V2 => {
                let charge = read_value(&self.dir.join("memory.current"))?;
                let [inactive] =
                    read_stat(&self.dir.join("memory.stat"), ["inactive_file"]).unwrap_or_default();
                (charge, inactive)
            }
            CgroupVersion::V1 => {
                let charge = read_value(&self.dir.join("memory.usage_in_bytes"))?;
                let [total, own] = read_stat(
                    &self.dir.join("memory.stat"),
                    ["total_inactive_file", "inactive_file"],
                )
                .unwrap_or_default();
                (charge, total.or(own))
            }
        };
        Some(charge.saturating_sub(inactive.unwrap_or(0)))
    }

    /// The highest charge the kernel recorded: v2 `memory.peak` (may be missing on older
    /// kernels → None), v1 `memory.max_usage_in_bytes`.
    pub fn peak(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V2 => "memory.peak",
            CgroupVersion::V1 => "memory.max_usage_in_bytes",
        };
        read_value(&self.dir.join(file))
    }

    /// OOM kills so far: v2 `oom_kill` of `memory.events`; v1 `oom_kill` of
    /// `memory.oom_control` (may be missing → None).
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        let [kills] = read_stat(&self.dir.join(file), ["oom_kill"])?;
        kills
    }

    /// The least limit any of `files` sets over the cgroup and its ancestors.
    fn least(&self, files: &[&'static str]) -> Option<CgroupLimit> {
        let levels = std::iter::once((&self.dir, &self.path))
            .chain(self.ancestors.iter().map(|(dir, path)| (dir, path)));
        let mut best: Option<(u64, &'static str, &String)> = None;
        for (dir, cgroup) in levels {
            for &file in files {
                let Some(bytes) = read_limit(&dir.join(file)) else {
                    continue;
                };
                if best.is_none_or(|(least, _, _)| bytes < least) {
                    best = Some((bytes, file, cgroup));
                }
            }
        }
        best.map(|(bytes, file, cgroup)| CgroupLimit {
            bytes,
            file,
            cgroup: cgroup.clone(),
        })
    }
}

/// A limit file's value: None for "max" (v2) and for v1's "no limit" (any value >= 1 <<
/// 62, e.g. 9223372036854771712); None for garbage.
pub fn parse_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < 1 << 62)
}

/// The value of `key` in a flat-keyed file such as memory.stat / memory.events ("key
/// value" lines).
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| key_value(line, key))
}

/// The value of a "key value" line when its key is `key` and its value a number.
fn key_value(line: &str, key: &str) -> Option<u64> {
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != key {
        return None;
    }
    fields.next()?.parse().ok()
}

/// One line of /proc/self/mountinfo, the fields this module needs.
#[derive(Debug)]
struct Mount {
    /// The mount's root within its filesystem: for a cgroup mount, the cgroup it shows.
    root: String,
    point: String,
    fstype: String,
    super_options: String,
}

impl Mount {
    /// `id parent major:minor root mount-point options [optional...] - fstype source
    /// super-options`; None for a line of any other shape.
    fn parse(line: &str) -> Option<Mount> {
        let (before, after) = line.split_once(" - ")?;
        let mut before = before.split_ascii_whitespace().skip(3);
        let (root, point) = (before.next()?, before.next()?);
        before.next()?; // the per-mount options: the line is cut short without them
        let mut after = after.split_ascii_whitespace();
        let fstype = after.next()?;
        let super_options = after.nth(1).unwrap_or("");
        Some(Mount {
            root: unescape(root),
            point: unescape(point),
            fstype: fstype.to_owned(),
            super_options: super_options.to_owned(),
        })
    }
}

/// The mount of the kind `is_kind` that shows `path`: the first whose root holds it,
/// else the first of the kind (a cgroup namespace).
fn pick_mount<'m>(
    mounts: &'m [Mount],
    path: &str,
    is_kind: impl Fn(&Mount) -> bool,
) -> Option<&'m Mount> {
    let mut of_kind = mounts.iter().filter(|m| is_kind(m));
    let first = of_kind.clone().next()?;
    Some(
        of_kind
            .find(|m| m.root == "/" || strip_path_prefix(path, &m.root).is_some())
            .unwrap_or(first),
    )
}

/// `path` less `prefix`, whole components only ("/a" is not a prefix of "/ab").
fn strip_path_prefix<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// `point` (absolute) under `root`.
fn under(root: &Path, point: &str) -> PathBuf {
    let mut dir = root.to_path_buf();
    for component in Path::new(point).components() {
        if let Component::Normal(part) = component {
            dir.push(part);
        }
    }
    dir
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A limit file: None when unset, unreadable or garbage.
fn read_limit(path: &Path) -> Option<u64> {
    let mut buf = [0u8; 64];
    parse_limit(read_small(path, &mut buf)?)
}

/// A single-number file such as `memory.current`.
fn read_value(path: &Path) -> Option<u64> {
    let mut buf = [0u8; 64];
    read_small(path, &mut buf)?.trim().parse().ok()
}

/// The whole of a file that fits in `buf`; None when it does not, or cannot be read.
fn read_small<'b>(path: &Path, buf: &'b mut [u8]) -> Option<&'b str> {
    let mut file = File::open(path).ok()?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => return std::str::from_utf8(&buf[..filled]).ok(),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    None
}

/// The values of `keys` in a flat-keyed file, read line by line through a stack buffer
/// (`memory.stat` runs to a few KiB); None when the file cannot be read.
fn read_stat<const N: usize>(path: &Path, keys: [&str; N]) -> Option<[Option<u64>; N]> {
    let mut file = File::open(path).ok()?;
    let mut values = [None; N];
    let mut take = |line: &[u8]| {
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        for (key, value) in keys.iter().zip(values.iter_mut()) {
            if value.is_none() {
                *value = key_value(line, key);
            }
        }
    };
    let mut buf = [0u8; 1024];
    let mut filled = 0;
    // Inside a line longer than the buffer: no key of ours, skipped to its end.
    let mut skipping = false;
    loop {
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        filled += n;
        let mut start = 0;
        while let Some(end) = buf[start..filled].iter().position(|&b| b == b'\n') {
            if !skipping {
                take(&buf[start..start + end]);
            }
            skipping = false;
            start += end + 1;
        }
        if n == 0 {
            if !skipping && start < filled {
                take(&buf[start..filled]);
            }
            return Some(values);
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            skipping = true;
            filled = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// Writes `files` (path relative to `dir`, content) into a fresh tree.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a file has a parent"))
                .expect("fixture dirs");
            std::fs::write(path, text).expect("fixture file");
        }
        dir
    }

    /// This machine's (a hybrid: v2 mounted with only hugetlb, memory on v1).
    const HYBRID_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n\
        5:devices:/\n4:memory:/process_api/52dc8909e599ac32a9effe7c5392b3c6\n3:cpuset:/\n\
        2:cpuacct:/\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTINFO: &str = "\
22 1 259:1 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const K8S_PATH: &str = "/kubepods.slice/kubepods-burstable.slice/\
        kubepods-burstable-pod1.slice/cri-containerd-abc.scope";

    /// A Kubernetes node's v2 view (host cgroup namespace): the whole hierarchy mounted.
    fn k8s_cgroup() -> String {
        format!("0::{K8S_PATH}\n")
    }
    const K8S_MOUNTINFO: &str = "\
1200 1100 0:300 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u
1210 1200 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// A Docker container on v1: each hierarchy's own subtree mounted.
    const DOCKER_CGROUP: &str = "12:hugetlb:/docker/abc123\n11:memory:/docker/abc123\n\
        4:cpu,cpuacct:/docker/abc123\n1:name=systemd:/docker/abc123\n";
    const DOCKER_MOUNTINFO: &str = "\
650 600 0:50 / / rw,relatime - overlay overlay rw
660 650 0:55 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
661 660 0:24 /docker/abc123 /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
662 660 0:27 /docker/abc123 /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
663 660 0:28 /docker/abc123 /sys/fs/cgroup/hugetlb ro,nosuid - cgroup cgroup rw,hugetlb
";

    /// What, /proc/self/cgroup, mountinfo, fixture files, and the expected version, path
    /// and directory (relative to the fixture root).
    type DetectionCase<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<(CgroupVersion, &'a str, String)>,
    );

    #[test]
    fn detection_picks_the_hierarchy_and_the_directory() {
        let k8s = k8s_cgroup();
        let cases: Vec<DetectionCase<'_>> = vec![
            (
                "k8s v2, host namespace",
                &k8s,
                K8S_MOUNTINFO,
                vec![(
                    "sys/fs/cgroup/cgroup.controllers",
                    "cpuset cpu io memory hugetlb pids\n",
                )],
                Some((
                    CgroupVersion::V2,
                    K8S_PATH,
                    format!("sys/fs/cgroup{K8S_PATH}"),
                )),
            ),
            (
                "v2 in a cgroup namespace: the path is /",
                "0::/\n",
                "30 20 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                vec![("sys/fs/cgroup/cgroup.controllers", "cpu memory\n")],
                Some((CgroupVersion::V2, "/", "sys/fs/cgroup".into())),
            ),
            (
                "v2, the container's own subtree mounted: the mount root is stripped",
                "0::/kubepods/pod1/abc\n",
                "30 20 0:26 /kubepods/pod1/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                vec![("sys/fs/cgroup/cgroup.controllers", "memory pids")],
                Some((
                    CgroupVersion::V2,
                    "/kubepods/pod1/abc",
                    "sys/fs/cgroup".into(),
                )),
            ),
            (
                "v2 path outside the mount root (namespace): used as is",
                "0::/sub/leaf\n",
                "30 20 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                vec![("sys/fs/cgroup/cgroup.controllers", "memory")],
                Some((
                    CgroupVersion::V2,
                    "/sub/leaf",
                    "sys/fs/cgroup/sub/leaf".into(),
                )),
            ),
            (
                "a mount root is a prefix by whole components only",
                "0::/ab/c\n",
                "30 20 0:26 /a /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                vec![("sys/fs/cgroup/cgroup.controllers", "memory")],
                Some((CgroupVersion::V2, "/ab/c", "sys/fs/cgroup/ab/c".into())),
            ),
            (
                "docker v1: the mount root is stripped",
                DOCKER_CGROUP,
                DOCKER_MOUNTINFO,
                vec![],
                Some((
                    CgroupVersion::V1,
                    "/docker/abc123",
                    "sys/fs/cgroup/memory".into(),
                )),
            ),
            (
                "hybrid, v2 without memory (this machine): v1",
                HYBRID_CGROUP,
                HYBRID_MOUNTINFO,
                vec![("sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n")],
                Some((
                    CgroupVersion::V1,
                    "/process_api/52dc8909e599ac32a9effe7c5392b3c6",
                    "sys/fs/cgroup/memory/process_api/52dc8909e599ac32a9effe7c5392b3c6".into(),
                )),
            ),
            (
                "hybrid, v2 with memory: v2",
                HYBRID_CGROUP,
                HYBRID_MOUNTINFO,
                vec![(
                    "sys/fs/cgroup/unified/cgroup.controllers",
                    "hugetlb memory\n",
                )],
                Some((CgroupVersion::V2, "/", "sys/fs/cgroup/unified".into())),
            ),
            (
                "hybrid, v2's cgroup.controllers unreadable: v1",
                HYBRID_CGROUP,
                HYBRID_MOUNTINFO,
                vec![],
                Some((
                    CgroupVersion::V1,
                    "/process_api/52dc8909e599ac32a9effe7c5392b3c6",
                    "sys/fs/cgroup/memory/process_api/52dc8909e599ac32a9effe7c5392b3c6".into(),
                )),
            ),
            (
                "v1 memory among other controllers, a mount point with a space",
                "5:hugetlb,memory:/job 7\n",
                "40 31 0:32 / /cg\\040v1/mem rw - cgroup cgroup rw,hugetlb,memory\n",
                vec![],
                Some((CgroupVersion::V1, "/job 7", "cg v1/mem/job 7".into())),
            ),
            (
                "the memory cgroup is not mounted",
                "4:memory:/x\n0::/\n",
                "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
                vec![],
                None,
            ),
            (
                "v2 line, v2 without memory, no v1 memory",
                "0::/user.slice\n",
                "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                vec![("sys/fs/cgroup/cgroup.controllers", "cpu io pids\n")],
                None,
            ),
            (
                "a path that climbs out of the namespace",
                "0::/../../other\n",
                "30 20 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                vec![("sys/fs/cgroup/cgroup.controllers", "memory")],
                None,
            ),
            ("empty files", "", "", vec![], None),
            (
                "garbage",
                "memory\n::::\n0:\n",
                "-\n1 2 - cgroup2\n1 2 3 / /x - \n\u{0} - cgroup cgroup memory\n",
                vec![],
                None,
            ),
        ];
        for (what, cgroup, mountinfo, files, expected) in cases {
            let root = tree(&files);
            let found = MemoryCgroup::from_proc(cgroup, mountinfo, root.path());
            let found = found.map(|cg| {
                let dir = cg
                    .dir()
                    .strip_prefix(root.path())
                    .expect("under the root")
                    .to_path_buf();
                (cg.version(), cg.path().to_owned(), dir)
            });
            let expected =
                expected.map(|(version, path, dir)| (version, path.to_owned(), PathBuf::from(dir)));
            assert_eq!(found, expected, "{what}");
        }
    }

    /// What, the fixture files, and what the cgroup reads from them.
    type ReadingCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Readings);

    /// What a fixture cgroup reads: limit (bytes, file, cgroup), soft limit, usage, peak,
    /// OOM kills.
    #[derive(Debug, PartialEq)]
    struct Readings {
        limit: Option<(u64, &'static str, String)>,
        soft: Option<(u64, &'static str, String)>,
        usage: Option<u64>,
        peak: Option<u64>,
        oom_kills: Option<u64>,
    }

    fn readings(cg: &MemoryCgroup) -> Readings {
        let flat = |l: CgroupLimit| (l.bytes, l.file, l.cgroup);
        Readings {
            limit: cg.limit().map(flat),
            soft: cg.soft_limit().map(flat),
            usage: cg.usage(),
            peak: cg.peak(),
            oom_kills: cg.oom_kills(),
        }
    }

    fn lim(bytes: u64, file: &'static str, cgroup: &str) -> Option<(u64, &'static str, String)> {
        Some((bytes, file, cgroup.to_owned()))
    }

    /// The v2 fixture: the process in /a/b, the hierarchy mounted at /sys/fs/cgroup.
    fn v2(files: &[(&str, &str)]) -> (tempfile::TempDir, MemoryCgroup) {
        let mut all = vec![("sys/fs/cgroup/cgroup.controllers", "cpu memory\n")];
        all.extend_from_slice(files);
        let root = tree(&all);
        let mountinfo = "30 20 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let cg = MemoryCgroup::from_proc("0::/a/b\n", mountinfo, root.path()).expect("v2 found");
        (root, cg)
    }

    /// The v1 fixture: a Docker-like view, cgroup /docker/a/b with /docker mounted at
    /// /sys/fs/cgroup/memory.
    fn v1(files: &[(&str, &str)]) -> (tempfile::TempDir, MemoryCgroup) {
        let root = tree(files);
        let mountinfo = "35 31 0:32 /docker /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let cg = MemoryCgroup::from_proc("4:memory:/docker/a/b\n", mountinfo, root.path())
            .expect("v1 found");
        (root, cg)
    }

    const NO_LIMIT_V1: &str = "9223372036854771712\n";

    #[test]
    fn v2_limits_charge_peak_and_oom_kills() {
        let stat = "anon 400\nfile 600\nactive_file 100\ninactive_file 200\nfile_mapped 7\n";
        let cases: Vec<ReadingCase<'_>> = vec![
            (
                "limit on the leaf, ancestors unlimited",
                vec![
                    ("sys/fs/cgroup/a/memory.max", "max\n"),
                    ("sys/fs/cgroup/a/b/memory.max", "1073741824\n"),
                    ("sys/fs/cgroup/a/b/memory.high", "max\n"),
                    ("sys/fs/cgroup/a/b/memory.current", "500\n"),
                    ("sys/fs/cgroup/a/b/memory.stat", stat),
                    ("sys/fs/cgroup/a/b/memory.peak", "900\n"),
                    (
                        "sys/fs/cgroup/a/b/memory.events",
                        "low 0\nhigh 5\nmax 2\noom 3\noom_kill 3\noom_group_kill 0\n",
                    ),
                ],
                Readings {
                    limit: lim(GIB, "memory.max", "/a/b"),
                    soft: None,
                    usage: Some(300),
                    peak: Some(900),
                    oom_kills: Some(3),
                },
            ),
            (
                "an ancestor tighter than the leaf",
                vec![
                    ("sys/fs/cgroup/a/memory.max", "536870912\n"),
                    ("sys/fs/cgroup/a/b/memory.max", "1073741824\n"),
                    ("sys/fs/cgroup/a/b/memory.current", "100\n"),
                ],
                Readings {
                    limit: lim(512 * MIB, "memory.max", "/a"),
                    soft: None,
                    usage: Some(100),
                    peak: None,
                    oom_kills: None,
                },
            ),
            (
                "the mount point's own limit counts",
                vec![
                    ("sys/fs/cgroup/memory.max", "268435456\n"),
                    ("sys/fs/cgroup/a/b/memory.max", "1073741824\n"),
                ],
                Readings {
                    limit: lim(256 * MIB, "memory.max", "/"),
                    soft: None,
                    usage: None,
                    peak: None,
                    oom_kills: None,
                },
            ),
            (
                "memory.high tighter than memory.max",
                vec![
                    ("sys/fs/cgroup/a/b/memory.max", "1073741824\n"),
                    ("sys/fs/cgroup/a/b/memory.high", "805306368\n"),
                    ("sys/fs/cgroup/a/b/memory.current", "10\n"),
                    ("sys/fs/cgroup/a/b/memory.stat", "inactive_file 30\n"),
                ],
                Readings {
                    limit: lim(768 * MIB, "memory.high", "/a/b"),
                    soft: None,
                    usage: Some(0),
                    peak: None,
                    oom_kills: None,
                },
            ),
            (
                "a tie: the nearest cgroup, memory.max",
                vec![
                    ("sys/fs/cgroup/a/memory.max", "4096\n"),
                    ("sys/fs/cgroup/a/b/memory.high", "4096\n"),
                    ("sys/fs/cgroup/a/b/memory.max", "4096\n"),
                ],
                Readings {
                    limit: lim(4096, "memory.max", "/a/b"),
                    soft: None,
                    usage: None,
                    peak: None,
                    oom_kills: None,
                },
            ),
            (
                "everything max, v1 files ignored, no inactive_file, no oom_kill line",
                vec![
                    ("sys/fs/cgroup/a/memory.max", "max\n"),
                    ("sys/fs/cgroup/a/b/memory.max", "max\n"),
                    ("sys/fs/cgroup/a/b/memory.high", "max\n"),
                    ("sys/fs/cgroup/a/b/memory.soft_limit_in_bytes", "4096\n"),
                    ("sys/fs/cgroup/a/b/memory.limit_in_bytes", "4096\n"),
                    ("sys/fs/cgroup/a/b/memory.current", "12345\n"),
                    ("sys/fs/cgroup/a/b/memory.stat", "anon 1\nfile 2\n"),
                    (
                        "sys/fs/cgroup/a/b/memory.events",
                        "low 0\nhigh 0\nmax 0\noom 0\n",
                    ),
                ],
                Readings {
                    limit: None,
                    soft: None,
                    usage: Some(12345),
                    peak: None,
                    oom_kills: None,
                },
            ),
            (
                "garbage everywhere",
                vec![
                    ("sys/fs/cgroup/a/b/memory.max", "-1\n"),
                    ("sys/fs/cgroup/a/b/memory.high", "lots"),
                    ("sys/fs/cgroup/a/b/memory.current", "\u{fffd}\n"),
                    ("sys/fs/cgroup/a/b/memory.peak", "18446744073709551616\n"),
                    ("sys/fs/cgroup/a/b/memory.events", "oom_kill\noom_kill x\n"),
                ],
                Readings {
                    limit: None,
                    soft: None,
                    usage: None,
                    peak: None,
                    oom_kills: None,
                },
            ),
        ];
        for (what, files, expected) in cases {
            let (_root, cg) = v2(&files);
            assert_eq!(readings(&cg), expected, "{what}");
        }
    }

    #[test]
    fn v1_limits_charge_peak_and_oom_kills() {
        let cases: Vec<ReadingCase<'_>> = vec![
            (
                "unlimited leaf, an ancestor limited, total_inactive_file preferred",
                vec![
                    (
                        "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes",
                        NO_LIMIT_V1,
                    ),
                    (
                        "sys/fs/cgroup/memory/a/memory.limit_in_bytes",
                        "2147483648\n",
                    ),
                    ("sys/fs/cgroup/memory/memory.limit_in_bytes", NO_LIMIT_V1),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.soft_limit_in_bytes",
                        "1073741824\n",
                    ),
                    (
                        "sys/fs/cgroup/memory/a/memory.soft_limit_in_bytes",
                        NO_LIMIT_V1,
                    ),
                    ("sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "1000\n"),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.stat",
                        "cache 500\nrss 400\ninactive_file 100\nactive_file 50\nhierarchical_memory_limit 2147483648\ntotal_inactive_file 300\n",
                    ),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.max_usage_in_bytes",
                        "1500\n",
                    ),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.oom_control",
                        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                    ),
                ],
                Readings {
                    limit: lim(2 * GIB, "memory.limit_in_bytes", "/docker/a"),
                    soft: lim(GIB, "memory.soft_limit_in_bytes", "/docker/a/b"),
                    usage: Some(700),
                    peak: Some(1500),
                    oom_kills: Some(2),
                },
            ),
            (
                "the mount point is the top: a limit above it is not ours to read",
                vec![
                    ("sys/fs/cgroup/memory.limit_in_bytes", "4096\n"),
                    ("sys/fs/cgroup/memory/memory.limit_in_bytes", "8192\n"),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes",
                        NO_LIMIT_V1,
                    ),
                ],
                Readings {
                    limit: lim(8192, "memory.limit_in_bytes", "/docker"),
                    soft: None,
                    usage: None,
                    peak: None,
                    oom_kills: None,
                },
            ),
            (
                "unlimited everywhere, only inactive_file, an old kernel's oom_control",
                vec![
                    (
                        "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes",
                        NO_LIMIT_V1,
                    ),
                    ("sys/fs/cgroup/memory/a/memory.limit_in_bytes", NO_LIMIT_V1),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.soft_limit_in_bytes",
                        NO_LIMIT_V1,
                    ),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.usage_in_bytes",
                        "7634944\n",
                    ),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.stat",
                        "cache 4075520\ninactive_file 1261568\n",
                    ),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.max_usage_in_bytes",
                        "7675904",
                    ),
                    (
                        "sys/fs/cgroup/memory/a/b/memory.oom_control",
                        "oom_kill_disable 0\nunder_oom 0\n",
                    ),
                ],
                Readings {
                    limit: None,
                    soft: None,
                    usage: Some(7634944 - 1261568),
                    peak: Some(7675904),
                    oom_kills: None,
                },
            ),
            (
                "v2 files ignored, memory.stat missing",
                vec![
                    ("sys/fs/cgroup/memory/a/b/memory.max", "4096\n"),
                    ("sys/fs/cgroup/memory/a/b/memory.high", "4096\n"),
                    ("sys/fs/cgroup/memory/a/b/memory.current", "4096\n"),
                    ("sys/fs/cgroup/memory/a/b/memory.peak", "4096\n"),
                    ("sys/fs/cgroup/memory/a/b/memory.events", "oom_kill 9\n"),
                    ("sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "5000\n"),
                ],
                Readings {
                    limit: None,
                    soft: None,
                    usage: Some(5000),
                    peak: None,
                    oom_kills: None,
                },
            ),
        ];
        for (what, files, expected) in cases {
            let (_root, cg) = v1(&files);
            assert_eq!(readings(&cg), expected, "{what}");
        }
    }

    #[test]
    fn limits_are_read_again_on_every_call() {
        let (root, cg) = v2(&[("sys/fs/cgroup/a/b/memory.max", "max\n")]);
        assert_eq!(cg.limit(), None);
        let max = root.path().join("sys/fs/cgroup/a/b/memory.max");
        std::fs::write(&max, "65536\n").expect("resize");
        assert_eq!(cg.limit().map(|l| l.bytes), Some(65536));
    }

    #[test]
    fn stat_files_longer_than_the_read_buffer() {
        // Keys past the first KiB, a line longer than the buffer, no final newline.
        let mut stat = String::new();
        for i in 0..100 {
            stat.push_str(&format!("padding_{i} {i}\n"));
        }
        stat.push_str(&format!("inactive_file_{} 1\n", "x".repeat(3000)));
        stat.push_str("inactive_file 40\n");
        stat.push_str(&"y".repeat(2500));
        stat.push_str(" 7\ntotal_inactive_file 60");
        let (_root, cg) = v1(&[
            ("sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "100\n"),
            ("sys/fs/cgroup/memory/a/b/memory.stat", &stat),
        ]);
        assert_eq!(cg.usage(), Some(40));
        assert_eq!(stat_value(&stat, "total_inactive_file"), Some(60));
        assert_eq!(stat_value(&stat, "padding_99"), Some(99));
    }

    #[test]
    fn limit_values() {
        let cases = [
            ("max\n", None),
            ("max", None),
            ("1073741824\n", Some(GIB)),
            (" 4096 ", Some(4096)),
            ("0\n", Some(0)),
            ("9223372036854771712\n", None),
            ("9223372036854775807", None),
            ("4611686018427387904", None),
            ("4611686018427387903", Some((1 << 62) - 1)),
            ("18446744073709551616", None),
            ("-1", None),
            ("", None),
            ("12 MiB", None),
            ("0x1000", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_limit(text), expected, "{text:?}");
        }
    }

    #[test]
    fn flat_keyed_values() {
        let text = "anon 10\nfile 20\nfile_mapped 30\ninactive_file 40\ntotal_inactive_file 50\n\
            odd\nbad x\nbad 7\n  spaced \t 60  \n";
        let cases = [
            ("anon", Some(10)),
            ("file", Some(20)),
            ("file_mapped", Some(30)),
            ("inactive_file", Some(40)),
            ("total_inactive_file", Some(50)),
            ("spaced", Some(60)),
            ("bad", Some(7)),
            ("odd", None),
            ("missing", None),
            ("inactive", None),
            ("", None),
        ];
        for (key, expected) in cases {
            assert_eq!(stat_value(text, key), expected, "{key:?}");
        }
    }

    #[test]
    fn mountinfo_escapes() {
        let cases = [
            ("/plain", "/plain"),
            ("/a\\040b", "/a b"),
            ("/tab\\011end", "/tab\tend"),
            ("/back\\134slash", "/back\\slash"),
            ("/short\\04", "/short\\04"),
            ("/not\\999octal", "/not\\999octal"),
            ("/big\\777", "/big?"),
            ("\\", "\\"),
        ];
        for (field, expected) in cases {
            assert_eq!(unescape(field), expected, "{field:?}");
        }
    }

    #[test]
    fn detects_this_machine_loosely() {
        let Some(cg) = MemoryCgroup::detect() else {
            // No memory cgroup mounted here: nothing more to check.
            return;
        };
        assert!(cg.dir().is_dir(), "{cg:?}");
        let usage = cg.usage();
        assert!(usage.is_some(), "{cg:?}");
        let _ = cg.limit();
        let _ = cg.soft_limit();
        let _ = cg.oom_kills();
        if let (Some(usage), Some(peak)) = (usage, cg.peak()) {
            assert!(usage <= peak, "usage {usage} above peak {peak}");
        }
    }
}
