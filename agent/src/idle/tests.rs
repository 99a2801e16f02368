//! Tests of the activity model with short, real timeouts.

use super::*;

const TIMEOUT: Duration = Duration::from_millis(300);

async fn idle_within(activity: &Activity, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(limit, activity.idle()).await.ok()?;
    Some(started.elapsed())
}

#[tokio::test]
async fn an_untouched_workspace_goes_idle_after_the_timeout() {
    let activity = Activity::new(source::AGENT_START, Some(TIMEOUT));
    let elapsed = idle_within(&activity, Duration::from_secs(2))
        .await
        .expect("idle");
    assert!(elapsed >= TIMEOUT - Duration::from_millis(5), "{elapsed:?}");
    assert!(
        elapsed < TIMEOUT + Duration::from_millis(150),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn no_timeout_means_never_idle() {
    let activity = Activity::new(source::AGENT_START, None);
    assert!(
        idle_within(&activity, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(activity.status().stops_in_seconds, None);
}

#[tokio::test]
async fn busy_sources_hold_the_countdown_and_restart_it_when_done() {
    let activity = Activity::new(source::AGENT_START, Some(TIMEOUT));
    let guard = activity.busy(source::EXEC);
    assert!(
        idle_within(&activity, TIMEOUT * 2).await.is_none(),
        "busy is never idle"
    );
    assert_eq!(activity.status().busy_sources, vec!["exec".to_owned()]);
    drop(guard);
    let elapsed = idle_within(&activity, Duration::from_secs(2))
        .await
        .expect("idle after busy");
    assert!(
        elapsed >= TIMEOUT - Duration::from_millis(5),
        "the countdown restarts at the end: {elapsed:?}"
    );
    assert_eq!(activity.status().last_activity_source, "exec");
}

#[tokio::test]
async fn touches_push_the_stop_back() {
    let activity = Activity::new(source::AGENT_START, Some(TIMEOUT));
    let toucher = {
        let activity = Arc::clone(&activity);
        tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(TIMEOUT / 3).await;
                activity.touch(source::EXEC_INPUT);
            }
        })
    };
    let elapsed = idle_within(&activity, Duration::from_secs(5))
        .await
        .expect("idle in the end");
    toucher.await.unwrap();
    assert!(elapsed >= TIMEOUT * 2, "typing kept it up: {elapsed:?}");
}

#[tokio::test]
async fn a_pin_keeps_it_up_until_it_ends() {
    let activity = Activity::new(source::AGENT_START, Some(TIMEOUT));
    activity.pin(Some(TIMEOUT * 2));
    assert!(activity.status().busy_sources.contains(&"pin".to_owned()));
    let elapsed = idle_within(&activity, Duration::from_secs(3))
        .await
        .expect("idle after the pin");
    assert!(
        elapsed >= TIMEOUT * 3 - Duration::from_millis(20),
        "pin end then a full timeout: {elapsed:?}"
    );
}

#[tokio::test]
async fn attached_clients_are_warned_once_before_the_stop() {
    let activity = Activity::new(source::AGENT_START, Some(Duration::from_millis(500)));
    let mut notices = activity.notices();
    idle_within(&activity, Duration::from_secs(2))
        .await
        .expect("idle");
    let notice = notices.try_recv().expect("a warning was sent");
    assert!(notice.contains("stops in"), "{notice}");
    assert!(
        notices.try_recv().is_err(),
        "only one warning per countdown"
    );
}

#[test]
fn a_restart_keeps_the_last_activity_and_a_boot_does_not() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("activity.json");
    let first = Activity::restore(path.clone(), "boot-a".into(), Some(TIMEOUT));
    first.touch(source::EXEC_INPUT);
    let touched_at = first.status().last_activity_unix_ms;
    drop(first);
    std::thread::sleep(Duration::from_millis(50));

    let restarted = Activity::restore(path.clone(), "boot-a".into(), Some(TIMEOUT));
    let status = restarted.status();
    assert_eq!(
        status.last_activity_unix_ms, touched_at,
        "a restart keeps the time"
    );
    assert_eq!(status.last_activity_source, "exec input");

    let rebooted = Activity::restore(path, "boot-b".into(), Some(TIMEOUT));
    let status = rebooted.status();
    assert!(
        status.last_activity_unix_ms > touched_at,
        "a boot starts afresh"
    );
    assert_eq!(status.last_activity_source, "boot");
}

#[test]
fn warning_lead_is_five_minutes_or_a_fifth() {
    assert_eq!(
        warning_lead(Duration::from_secs(3600)),
        Duration::from_secs(300)
    );
    assert_eq!(
        warning_lead(Duration::from_secs(60)),
        Duration::from_secs(12)
    );
}

#[test]
fn session_manager_shells_are_found_by_their_parent_and_terminal() {
    let root = tempfile::tempdir().unwrap();
    let proc_root = root.path().join("proc");
    let dev_root = root.path().join("dev");
    std::fs::create_dir_all(dev_root.join("pts")).unwrap();
    std::fs::write(dev_root.join("pts/3"), "").unwrap();
    let write = |pid: u32, stat: &str| {
        std::fs::create_dir_all(proc_root.join(pid.to_string())).unwrap();
        std::fs::write(proc_root.join(pid.to_string()).join("stat"), stat).unwrap();
    };
    // The worker, a shell on /dev/pts/3 (major 136, minor 3 = 34819) under it, and an unrelated shell.
    write(100, "100 (ssm-session-worker) S 1 100 100 0 -1 4194560 0 0");
    write(101, "101 (bash) S 100 101 101 34819 101 4194560 0 0");
    write(200, "200 (bash) S 1 200 200 34820 200 4194560 0 0");
    let input = session_manager_input(&proc_root, &dev_root).expect("one shell");
    assert_eq!(
        input,
        std::fs::metadata(dev_root.join("pts/3"))
            .unwrap()
            .accessed()
            .unwrap()
    );

    std::fs::remove_dir_all(proc_root.join("100")).unwrap();
    assert_eq!(
        session_manager_input(&proc_root, &dev_root),
        None,
        "no worker, no session"
    );
}

/// Bug: `skiff delete` of an idle-stopped workspace started an agent that restored the expired countdown, stopped
/// at once and exited before the client connected ("Connection refused"); the stop now waits a short grace.
#[test]
fn a_restored_countdown_that_is_due_waits_the_startup_grace() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("activity.json");
    let long_ago = SystemTime::now() - Duration::from_secs(600);
    std::fs::write(
        &path,
        serde_json::json!({
            "last_activity_unix_ms": unix_ms(long_ago),
            "source": "exec",
            "boot_id": "boot-1",
            "pinned_until_unix_ms": null,
        })
        .to_string(),
    )
    .unwrap();
    let timeout = Duration::from_secs(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let activity = Activity::restore(path, "boot-1".into(), Some(timeout));
        let elapsed = idle_within(&activity, Duration::from_secs(5))
            .await
            .expect("it still stops");
        assert!(
            elapsed >= STARTUP_GRACE - Duration::from_millis(50),
            "not before the grace: {elapsed:?}"
        );
        assert!(
            elapsed < STARTUP_GRACE + Duration::from_millis(500),
            "the grace is not a fresh countdown: {elapsed:?}"
        );
        assert_eq!(activity.status().last_activity_source, "exec");
    });
}

#[tokio::test]
async fn a_hold_keeps_it_up_without_counting_as_use() {
    let activity = Activity::new(source::AGENT_START, Some(TIMEOUT));
    tokio::time::sleep(TIMEOUT / 2).await;
    let held = activity.hold(source::CALL);
    assert!(
        idle_within(&activity, TIMEOUT).await.is_none(),
        "held is never idle"
    );
    assert_eq!(
        activity.status().busy_sources,
        vec![source::CALL.to_owned()]
    );
    drop(held);
    // The countdown from the agent's start is long over: the stop comes at once, not a timeout later.
    let elapsed = idle_within(&activity, Duration::from_secs(2))
        .await
        .expect("idle once released");
    assert!(elapsed < TIMEOUT / 2, "{elapsed:?}");
    assert_eq!(activity.status().last_activity_source, source::AGENT_START);
}
