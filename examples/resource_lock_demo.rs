//! Named read-write locks: readers sharing, a writer waiting, upgrade and downgrade, a
//! lease running out, and a deadlock reported.
//!
//! Five acts on a [`LockManager`], each checked as it goes (the demo fails if the lock
//! behaves otherwise):
//!
//! 1. three reader threads hold `timeline` at once, shown by `inspect`;
//! 2. a writer queues behind them, and writer preference holds back a new reader, whose
//!    `try_read_for` times out; the `inspect` state is printed as JSON at that point;
//! 3. a reader upgrades to a writer and downgrades back, a second would-be upgrader is
//!    refused at once, and a re-entrant write is refused;
//! 4. a lease runs out on a [`ManualClock`]: the stale guard fails its checks and its
//!    [`Fenced`] data, while a new writer gets in with a higher fencing token;
//! 5. two threads each hold one name and ask for the other: after the 100 ms check delay
//!    one of them gets [`LockError::Deadlock`], naming both threads and both names.
//!
//! Threads take their first lock one after another, so thread numbers and tokens are the
//! same on every run; only the wait times in the JSON differ. The lease expiry is also
//! logged (at `warn`, on stderr).
//!
//! Run it with:
//!
//! ```text
//! cargo run -p memwarden-examples --example resource_lock_demo
//! ```

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use memwarden::core::{Clock, ManualClock};
use memwarden_lock::{Fenced, Held, LockConfig, LockError, LockManager, LockState, Mode, WaitKind};

/// How long a step waits for another thread to reach a state before the demo gives up.
const PATIENCE: Duration = Duration::from_secs(10);

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();

    let clock = ManualClock::new();
    let config = LockConfig {
        lease: Some(Duration::from_secs(30)),
        // Nothing here waits long enough to look for a deadlock; act 5 has its own manager.
        check_delay: Duration::from_secs(1),
        fair: false,
        // The demo expires leases itself, by calling `expire_overdue` after moving the
        // clock; a monitor that woke in between would make the output depend on timing.
        monitor_interval: Some(Duration::from_secs(3600)),
    };
    let locks = LockManager::with_clock(config, Arc::new(clock.clone()))?;
    let timeline = locks.fenced("timeline", vec!["intro".to_owned()])?;

    readers_and_a_writer(&locks, &timeline, &clock)?;
    upgrade_and_downgrade(&locks, &timeline)?;
    lease_expiry(&locks, &clock)?;
    deadlock()?;

    let stats = locks.stats();
    println!("\n== stats of the main manager ==");
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

/// Acts 1 and 2: readers share, a waiting writer holds back a new reader.
fn readers_and_a_writer(
    locks: &LockManager,
    timeline: &Fenced<Vec<String>>,
    clock: &ManualClock,
) -> anyhow::Result<()> {
    println!("== 1. readers share `timeline` ==");
    thread::scope(|s| -> anyhow::Result<()> {
        let mut readers = Vec::new();
        // Each reader holds until its sender is dropped, also when the demo fails early.
        let mut release = Vec::new();
        for i in 1..=3 {
            let (acquired, got) = mpsc::channel();
            let (let_go, released) = mpsc::channel::<()>();
            release.push(let_go);
            let reader = thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn_scoped(s, move || -> anyhow::Result<()> {
                    let guard = locks.read("timeline")?;
                    let scenes = timeline.with(&guard, Vec::len)?;
                    acquired
                        .send((guard.token(), scenes))
                        .context("main is listening")?;
                    let _ = released.recv(); // ends when main drops the sender
                    Ok(())
                })?;
            // One at a time, so that tokens and thread numbers do not depend on scheduling.
            let (token, scenes) = got.recv().context("the reader acquired or failed")?;
            println!("reader-{i} holds `timeline` (token {token}) and sees {scenes} scene(s)");
            readers.push(reader);
            clock.advance(Duration::from_secs(1)); // so that the holds differ in age
        }
        let state = locks.inspect();
        print_holders(&state);
        ensure!(
            holders(&state, "timeline") == [Mode::Read; 3],
            "three readers hold `timeline` at once"
        );

        println!("\n== 2. a writer waits, and writer preference holds back a new reader ==");
        let writer = thread::Builder::new()
            .name("writer".to_owned())
            .spawn_scoped(s, || -> anyhow::Result<u64> {
                let guard = locks.write("timeline")?;
                timeline.with_mut(&guard, |t| t.push("credits".to_owned()))?;
                Ok(guard.token())
            })?;
        wait_until(locks, "the writer to queue", |state| {
            waiters(state, "timeline") == [WaitKind::Write]
        })?;
        println!("writer waits for a write lock on `timeline` behind the three readers");

        // The readers still hold a shared lock, yet a new reader is not let in.
        let timeout = Duration::from_millis(50);
        match locks.try_read_for("timeline", timeout) {
            Err(LockError::Timeout { name, mode, waited }) => {
                ensure!(waited >= timeout, "the new reader waited its whole timeout");
                println!(
                    "main asks for a {mode} lock on {name:?} for up to {timeout:?}: timed out, \
                     the waiting writer goes first"
                );
            }
            Ok(_) => bail!("a new reader overtook the waiting writer"),
            Err(e) => return Err(e.into()),
        }

        println!("\nsnapshot while three readers hold and the writer waits:");
        println!("{}", serde_json::to_string_pretty(&locks.inspect())?);

        drop(release);
        for reader in readers {
            reader.join().expect("a reader panicked")?;
        }
        let token = writer.join().expect("the writer panicked")?;
        println!("the readers let go; writer got `timeline` with token {token} and added a scene");
        Ok(())
    })
}

/// Act 3: upgrade, downgrade, and the upgrades and re-entries that are refused.
fn upgrade_and_downgrade(
    locks: &LockManager,
    timeline: &Fenced<Vec<String>>,
) -> anyhow::Result<()> {
    println!("\n== 3. upgrade and downgrade ==");
    let read = locks.read("timeline")?;
    println!("main reads `timeline` (token {})", read.token());
    match locks.write("timeline") {
        Err(e @ LockError::WouldDeadlock { .. }) => println!("main asks to write as well: {e}"),
        Ok(_) => bail!("a thread holding a read lock was granted a write lock"),
        Err(e) => return Err(e.into()),
    }
    let write = read.upgrade().map_err(|failed| failed.error)?;
    timeline.with_mut(&write, |t| t.insert(1, "chase".to_owned()))?;
    println!(
        "main upgraded to a write lock (token {}) and inserted a scene",
        write.token()
    );
    ensure!(locks.is_locked("timeline") == Some(Mode::Write));

    let read = write.downgrade()?;
    println!(
        "main downgraded to a read lock (token {}); no writer got in between",
        read.token()
    );
    // Another reader is let in beside the downgraded hold; it then upgrades, and waits
    // for main's read lock to go. Main asking to upgrade too would wait for the other
    // forever, so it is refused at once.
    let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
    thread::scope(|s| -> anyhow::Result<()> {
        let editor = thread::Builder::new()
            .name("editor".to_owned())
            .spawn_scoped(s, move || -> anyhow::Result<(u64, u64)> {
                let read = locks.try_read_for("timeline", Duration::from_secs(1))?;
                let read_token = read.token();
                waiting_tx.send(()).context("main is listening")?;
                let write = read.upgrade().map_err(|failed| failed.error)?;
                Ok((read_token, write.token()))
            })?;
        waiting_rx
            .recv()
            .context("the editor got its read lock or failed")?;
        wait_until(locks, "the editor to wait for its upgrade", |state| {
            waiters(state, "timeline") == [WaitKind::Upgrade]
        })?;
        println!("editor reads `timeline` beside main, and waits to upgrade");
        match read.upgrade() {
            Err(failed) => {
                println!("main asks to upgrade as well: {}", failed.error);
                ensure!(matches!(failed.error, LockError::UpgradeConflict { .. }));
                drop(failed.guard); // lets the editor's upgrade through
            }
            Ok(_) => bail!("two readers upgraded at once"),
        }
        let (read_token, write_token) = editor.join().expect("the editor panicked")?;
        println!(
            "main let go; editor upgraded its read lock (token {read_token}) to a write lock (token {write_token})"
        );
        Ok(())
    })?;
    let scenes = timeline.with(&locks.read("timeline")?, |t| t.join(", "))?;
    println!("the timeline now reads: {scenes}");
    Ok(())
}

/// Act 4: a lease runs out; the stale holder is fenced off and a new writer gets in.
fn lease_expiry(locks: &LockManager, clock: &ManualClock) -> anyhow::Result<()> {
    println!("\n== 4. a lease runs out (30 s lease, manual clock) ==");
    let ledger = locks.fenced("ledger", 0u64)?;
    let stale = locks.write("ledger")?;
    ledger.with_mut(&stale, |n| *n += 1)?;
    println!(
        "main writes `ledger` at {} (token {})",
        clock.now(),
        stale.token()
    );
    clock.advance(Duration::from_secs(31));
    let holder = locks
        .inspect()
        .locks
        .into_iter()
        .find(|l| l.name == "ledger")
        .and_then(|l| l.holders.into_iter().next())
        .context("main holds `ledger`")?;
    println!(
        "at {} it has held `ledger` for {:?}, {:?} left on its lease",
        clock.now(),
        holder.held_for.unwrap_or_default(),
        holder.lease_left.unwrap_or_default()
    );

    let expired = locks.expire_overdue();
    ensure!(expired == 1, "one lease expired, not {expired}");
    println!(
        "expire_overdue() expired {expired} grant; main's guard is_valid(): {}",
        stale.is_valid()
    );
    ensure!(!stale.is_valid());
    match ledger.with(&stale, |n| *n) {
        Err(e @ LockError::LeaseExpired { .. }) => println!("main reads through it: {e}"),
        Ok(_) => bail!("a stale guard reached fenced data"),
        Err(e) => return Err(e.into()),
    }

    let (token, count) = thread::scope(|s| {
        thread::Builder::new()
            .name("new-writer".to_owned())
            .spawn_scoped(s, || -> anyhow::Result<(u64, u64)> {
                let fresh = locks.try_write_for("ledger", Duration::from_secs(1))?;
                let count = ledger.with_mut(&fresh, |n| {
                    *n += 1;
                    *n
                })?;
                Ok((fresh.token(), count))
            })?
            .join()
            .expect("the new writer panicked")
    })?;
    ensure!(token > stale.token(), "the fencing token grew");
    println!(
        "new-writer got `ledger` at once with token {token} (> {}), counted to {count}",
        stale.token()
    );
    drop(stale); // releases nothing: the hold is already gone
    Ok(())
}

/// Act 5: two threads each hold one name and ask for the other.
fn deadlock() -> anyhow::Result<()> {
    println!("\n== 5. a deadlock, found after the 100 ms check delay ==");
    let locks = LockManager::with_config(LockConfig {
        check_delay: Duration::from_millis(100),
        ..LockConfig::without_leases()
    })?;
    let locks = &locks;
    let (a_holds, b_may_take) = mpsc::channel::<()>();
    let (b_holds, a_may_ask) = mpsc::channel::<()>();
    thread::scope(|s| -> anyhow::Result<()> {
        let a = thread::Builder::new()
            .name("worker-a".to_owned())
            .spawn_scoped(s, move || -> anyhow::Result<Result<(), LockError>> {
                let _left = locks.write("left")?;
                a_holds.send(()).context("main is listening")?;
                a_may_ask.recv().context("worker-b holds `right`")?;
                Ok(locks.write("right").map(drop))
            })?;
        b_may_take.recv().context("worker-a holds `left`")?;
        let b = thread::Builder::new()
            .name("worker-b".to_owned())
            .spawn_scoped(s, move || -> anyhow::Result<Result<(), LockError>> {
                let _right = locks.write("right")?;
                b_holds.send(()).context("main is listening")?;
                wait_until(locks, "worker-a to wait for `right`", |state| {
                    waiters(state, "right") == [WaitKind::Write]
                })?;
                // worker-a started waiting first, so it checks first and is the one told;
                // this margin keeps worker-b's own check after worker-a has given up.
                thread::sleep(Duration::from_millis(50));
                Ok(locks.write("left").map(drop))
            })?;
        let a = a.join().expect("worker-a panicked")?;
        let b = b.join().expect("worker-b panicked")?;
        for (who, outcome) in [("worker-a", a), ("worker-b", b)] {
            match outcome {
                Ok(()) => println!("{who} got both names"),
                Err(e @ LockError::Deadlock { .. }) => println!("{who}: {e}"),
                Err(e) => bail!("{who} failed otherwise: {e}"),
            }
        }
        Ok(())
    })?;
    let deadlocks = locks.stats().deadlocks;
    ensure!(deadlocks == 1, "one deadlock reported, not {deadlocks}");
    println!(
        "deadlocks reported: {deadlocks}; the other thread went on once the first gave up `left`"
    );
    Ok(())
}

/// The modes in which `name` is held, in grant order.
fn holders(state: &LockState, name: &str) -> Vec<Mode> {
    let lock = state.locks.iter().find(|l| l.name == name);
    let mut holds: Vec<_> = lock
        .map(|l| l.holders.iter().map(|h| (h.token, h.mode)).collect())
        .unwrap_or_default();
    holds.sort_unstable();
    holds.into_iter().map(|(_, mode)| mode).collect()
}

/// What each waiter on `name` waits for.
fn waiters(state: &LockState, name: &str) -> Vec<WaitKind> {
    let lock = state.locks.iter().find(|l| l.name == name);
    lock.map(|l| l.waiters.iter().map(|w| w.kind).collect())
        .unwrap_or_default()
}

fn print_holders(state: &LockState) {
    for lock in &state.locks {
        let mut holders: Vec<_> = lock.holders.iter().collect();
        holders.sort_by_key(|h| h.token);
        let list: Vec<String> = holders
            .iter()
            .map(|h| format!("{} ({}, token {})", h.thread, h.mode, h.token))
            .collect();
        println!("state: {:?} held by {}", lock.name, list.join(", "));
    }
}

/// Polls the state until `ready` says yes; fails after [`PATIENCE`].
fn wait_until(
    locks: &LockManager,
    what: &str,
    ready: impl Fn(&LockState) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !ready(&locks.inspect()) {
        ensure!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
