//! Unit tests of the host set-up: which packages are missing, what is done about them on which host, the pinned
//! python tools and how the versions found are judged.

use std::collections::BTreeMap;

use super::*;

fn found(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(name, version)| ((*name).to_owned(), version.map(str::to_owned)))
        .collect()
}

#[test]
fn the_requirements_pin_the_versions_the_tests_were_written_for() {
    let tools = python_tools(requirements());
    let pins: Vec<(&str, Option<&str>)> = tools
        .iter()
        .map(|tool| (tool.name.as_str(), tool.version.as_deref()))
        .collect();
    assert_eq!(
        pins,
        [
            ("moto", Some("5.2.5")),
            ("awscli", None),
            ("cloudsplaining", Some("0.9.1")),
            ("parliament", Some("1.6.4")),
        ]
    );
}

#[test]
fn python_tools_read_extras_pins_and_comments() {
    let tools =
        python_tools("# comment\n\nmoto[server]==5.2.5  # the emulator\nawscli\nfoo_bar>=1\n");
    assert_eq!(
        tools,
        [
            PythonTool {
                name: "moto".to_owned(),
                version: Some("5.2.5".to_owned()),
            },
            PythonTool {
                name: "awscli".to_owned(),
                version: None,
            },
            PythonTool {
                name: "foo_bar".to_owned(),
                version: None,
            },
        ]
    );
}

#[test]
fn version_problems_name_the_version_found_and_the_one_needed() {
    let tools = python_tools(requirements());
    let all_right = found(&[
        ("moto", Some("5.2.5")),
        ("awscli", Some("1.40.0")),
        ("cloudsplaining", Some("0.9.1")),
        ("parliament", Some("1.6.4")),
    ]);
    assert!(version_problems(&tools, &all_right).is_empty());

    // This machine's system-wide moto, which answers some calls with HTTP 500.
    let system = found(&[
        ("moto", Some("5.2.1")),
        ("awscli", None),
        ("cloudsplaining", Some("0.9.1")),
    ]);
    assert_eq!(
        version_problems(&tools, &system),
        [
            "moto 5.2.1 (needs 5.2.5)",
            "awscli is missing",
            "parliament is missing (needs 1.6.4)",
        ]
    );
}

#[test]
fn parse_versions_reads_installed_and_missing_tools() {
    assert_eq!(
        parse_versions("moto 5.2.1\nawscli\n\ncloudsplaining 0.9.1\n"),
        found(&[
            ("moto", Some("5.2.1")),
            ("awscli", None),
            ("cloudsplaining", Some("0.9.1")),
        ])
    );
}

#[test]
fn missing_lists_the_packages_whose_probe_fails() {
    let missing = missing(
        TEST_PACKAGES,
        |probe| !matches!(probe, Probe::Programs(names) if names.contains(&"tmux") || names.contains(&"ssh")),
    );
    let packages: Vec<&str> = missing.iter().map(|missing| missing.package).collect();
    assert_eq!(packages, ["tmux", "openssh-client"]);
    assert!(missing[1].why.contains("SSH tests"));
}

#[test]
fn test_packages_are_those_ci_installed() {
    let packages: Vec<&str> = TEST_PACKAGES
        .iter()
        .map(|package| package.package)
        .collect();
    assert_eq!(
        packages,
        [
            "tmux",
            "shellcheck",
            "openssh-client",
            "docker-registry",
            "git",
            "python3-venv",
            "chromium",
            "chromium-driver"
        ]
    );
}

fn lacking(packages: &[&'static str]) -> Vec<Missing> {
    packages
        .iter()
        .map(|package| Missing {
            package,
            why: format!("the {package} tests"),
        })
        .collect()
}

#[test]
fn plan_install_installs_as_root_with_apt() {
    let host = Host {
        root: true,
        apt: true,
    };
    assert_eq!(plan_install("the tests", &[], host), Action::Nothing);
    assert_eq!(
        plan_install("the tests", &lacking(&["tmux", "git", "tmux"]), host),
        Action::Install(vec!["git", "tmux"])
    );
}

#[test]
fn plan_install_names_the_command_when_it_cannot_install() {
    let missing = lacking(&["shellcheck", "docker-registry"]);
    let Action::Explain(message) = plan_install(
        "the tests",
        &missing,
        Host {
            root: false,
            apt: true,
        },
    ) else {
        panic!("installed without root");
    };
    assert_eq!(
        message,
        "the host lacks packages the tests need:\n  shellcheck, for the shellcheck tests\n  docker-registry, for \
         the docker-registry tests\ninstall them with: sudo apt-get install -y --no-install-recommends \
         docker-registry shellcheck"
    );
    let Action::Explain(message) = plan_install(
        "these images",
        &lacking(&["debootstrap"]),
        Host {
            root: true,
            apt: false,
        },
    ) else {
        panic!("installed without apt");
    };
    assert!(
        message.ends_with(
            "install them with your package manager (on Debian: apt-get install -y \
             --no-install-recommends debootstrap)"
        ),
        "{message}"
    );
}
