//! Where pinned certificates are kept: both places earlier versions wrote stay readable.

use super::*;

#[test]
fn both_pinned_file_places_are_read_the_first_use_one_first() {
    let folder = tempfile::tempdir().unwrap();
    assert_eq!(pinned_certificate(folder.path()), None);

    // A local workspace: its agent wrote its own certificate into its state.
    std::fs::create_dir_all(folder.path().join("agent")).unwrap();
    std::fs::write(folder.path().join("agent/agent.crt"), "local agent").unwrap();
    assert_eq!(
        local_agent_file(folder.path()),
        folder.path().join("agent/agent.crt")
    );
    assert_eq!(
        pinned_certificate(folder.path()).as_deref(),
        Some("local agent")
    );

    // A workspace reached through Session Manager: pinned on first use beside the record.
    std::fs::write(folder.path().join("agent.crt"), "first use").unwrap();
    assert_eq!(
        first_use_file(folder.path()),
        folder.path().join("agent.crt")
    );
    assert_eq!(
        pinned_certificate(folder.path()).as_deref(),
        Some("first use")
    );
}
