//! Crash safety: a child process writes snapshots in a loop and is killed with SIGKILL at
//! random moments; every restorable snapshot must be exactly what was written.
//!
//! The child is this very test binary, re-executed to run only [`crash_child`] with
//! [`CHILD_ENV`] naming the store directory. Each payload is derived from `(id, n)`, where
//! `n` grows across children, so the parent can check any snapshot it restores.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memwarden_core::{ManualClock, ResourceId, ResourceKind};
use memwarden_snapshot::StoreConfig;

use crate::{files, open};

const CHILD_ENV: &str = "MEMWARDEN_SNAPSHOT_CRASH_CHILD";
const BASE_ENV: &str = "MEMWARDEN_SNAPSHOT_CRASH_BASE";
const IDS: u64 = 6;
const KILLS: u64 = 100;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        memory_bytes: 64 << 10,
        disk_bytes: 64 << 20, // never evicts, so every acknowledged write must survive
        ..StoreConfig::new(dir)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn id_of(k: u64) -> ResourceId {
    ResourceId::from(format!("res-{k}"))
}

fn kind_of(k: u64) -> ResourceKind {
    if k.is_multiple_of(2) {
        ResourceKind::RenderCache
    } else {
        ResourceKind::AudioCache
    }
}

fn version_of(n: u64) -> u32 {
    u32::try_from(n % 7).expect("small") + 1
}

/// The payload for write `n` of id `k`: `n`, then 1 to 48 KiB of bytes seeded by `(k, n)`.
fn payload(k: u64, n: u64) -> Vec<u8> {
    let mut state = k.wrapping_mul(0x1_0000_0001) ^ n;
    let len = 1 + usize::try_from(splitmix(&mut state) % (48 << 10)).expect("small");
    let mut out = n.to_le_bytes().to_vec();
    while out.len() < 8 + len {
        out.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    out.truncate(8 + len);
    out
}

/// Not a test of its own: the body of the child process (a no-op unless [`CHILD_ENV`] is set).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let base: u64 = std::env::var(BASE_ENV)
        .expect("base set")
        .parse()
        .expect("base is a number");
    let store = open(config(Path::new(&dir)), &ManualClock::new());
    let mut out = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = base;
    while Instant::now() < deadline {
        let k = n % IDS;
        store
            .put(&id_of(k), &kind_of(k), version_of(n), &payload(k, n))
            .expect("put");
        // Written straight to stdout (not through the test harness's capture).
        writeln!(out, "ACK {k} {n}").expect("stdout");
        out.flush().expect("stdout");
        n += 1;
    }
}

/// Kills the child if the parent panics.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
#[test]
fn sigkill_never_yields_a_wrong_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = 0x5eed_u64;
    let mut acked: Vec<Option<u64>> = vec![None; IDS as usize];
    let mut temp_files_seen = 0;
    let started = Instant::now();
    for round in 0..KILLS {
        let child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(BASE_ENV, (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts");
        let mut child = Kill(child);
        let stdout = child.0.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                // A line cut short by the kill has no newline and is not an acknowledgement.
                if let Some(ack) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACK ")) {
                    let mut parts = ack.split(' ').map(|p| p.parse::<u64>().expect("number"));
                    let (k, n) = (parts.next().expect("k"), parts.next().expect("n"));
                    if tx.send((k, n)).is_err() {
                        break;
                    }
                }
                line.clear();
            }
        });
        // Kill after a random number of acknowledged writes plus a random delay, so the kill
        // lands anywhere in a write: before, during or after the temp file, rename or delete.
        let wait_for = splitmix(&mut rng) % 12;
        let mut record = |(k, n): (u64, u64)| acked[k as usize] = Some(n);
        for _ in 0..wait_for {
            record(
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("child acknowledges"),
            );
        }
        std::thread::sleep(Duration::from_micros(splitmix(&mut rng) % 3000));
        drop(child); // SIGKILL, then reap
        reader.join().expect("reader thread");
        for ack in rx.try_iter() {
            record(ack);
        }
        temp_files_seen += files(dir.path(), "tmp").len();

        // Recover as the next process would, and check every snapshot against its (k, n).
        let store = open(config(dir.path()), &ManualClock::new());
        assert!(
            files(dir.path(), "tmp").is_empty(),
            "round {round}: temp file left"
        );
        for k in 0..IDS {
            let found = store.get(&id_of(k), &kind_of(k));
            let Some((version, bytes)) = found else {
                assert_eq!(
                    acked[k as usize], None,
                    "round {round}: acknowledged id {k} lost"
                );
                continue;
            };
            let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            assert_eq!(
                bytes,
                payload(k, n),
                "round {round}: id {k} write {n} wrong"
            );
            assert_eq!(version, version_of(n), "round {round}: id {k} write {n}");
            if let Some(last) = acked[k as usize] {
                assert!(
                    n >= last,
                    "round {round}: id {k} is write {n}, older than acknowledged {last}"
                );
            }
        }
        let stats = store.stats();
        assert_eq!(stats.corrupt, 0, "round {round}: {stats:?}");
    }
    eprintln!(
        "{KILLS} kills in {:.1?}; {temp_files_seen} left a temp file behind",
        started.elapsed()
    );
}
