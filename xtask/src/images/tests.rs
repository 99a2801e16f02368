//! Unit tests of the image table and the pure parts of `images`: planning, apt sources, debootstrap's output, and
//! telling a static busybox from a dynamic one. Building images for real is left to running `cargo xtask images`.

use std::collections::HashSet;

use super::*;

#[test]
fn every_name_in_the_table_is_unique() {
    let mut seen = HashSet::new();
    for spec in IMAGES {
        for name in std::iter::once(&spec.tag).chain(spec.aliases) {
            assert!(seen.insert(*name), "{name} appears twice in IMAGES");
        }
    }
}

#[test]
fn every_image_is_built_from_scratch_or_an_earlier_row() {
    for (index, spec) in IMAGES.iter().enumerate() {
        for base in spec.bases() {
            assert!(
                IMAGES[..index].iter().any(|earlier| earlier.tag == base),
                "{} is built FROM {base}, which no earlier row of IMAGES builds",
                spec.tag
            );
        }
    }
}

#[test]
fn the_debian_image_has_the_packages_tests_rely_on() {
    let Recipe::Debootstrap { suite, include } = &IMAGES[0].recipe else {
        panic!("the first image is not debootstrapped");
    };
    assert_eq!(*suite, "bookworm");
    for package in ["ca-certificates", "procps", "iproute2", "passwd", "sudo"] {
        assert!(include.contains(&package), "{package} is not included");
    }
}

#[test]
fn fingerprints_differ_between_rows() {
    let fingerprints: HashSet<String> = IMAGES.iter().map(ImageSpec::fingerprint).collect();
    assert_eq!(fingerprints.len(), IMAGES.len());
    assert_eq!(IMAGES[0].fingerprint().len(), 16);
}

#[test]
fn from_images_reads_every_stage_and_skips_flags() {
    let dockerfile =
        "# FROM comment\nFROM --platform=linux/amd64 debian:12 AS build\nRUN true\nfrom scratch\n";
    assert_eq!(from_images(dockerfile), ["debian:12", "scratch"]);
}

fn up_to_date(tag: &str) -> Option<Existing> {
    let spec = IMAGES.iter().find(|spec| spec.tag == tag)?;
    Some(Existing {
        id: format!("sha256:{tag}"),
        fingerprint: spec.fingerprint(),
    })
}

fn reasons(plan: &[Step]) -> Vec<(&str, Option<&str>)> {
    plan.iter()
        .map(|step| (step.spec.tag, step.build.as_deref()))
        .collect()
}

#[test]
fn plan_builds_nothing_when_every_image_is_up_to_date() {
    let plan = plan(IMAGES, false, up_to_date);
    assert!(plan.iter().all(|step| step.build.is_none()), "{plan:#?}");
}

#[test]
fn plan_builds_everything_with_force() {
    let plan = plan(IMAGES, true, up_to_date);
    assert!(
        plan.iter()
            .all(|step| step.build.as_deref() == Some("--force"))
    );
}

#[test]
fn plan_rebuilds_children_of_a_missing_base() {
    let plan = plan(IMAGES, false, |tag| {
        (tag != "skiff-test/debian:12")
            .then(|| up_to_date(tag))
            .flatten()
    });
    // Every image built on the Debian base (directly or through another stand-in) is rebuilt with it;
    // the busybox images are not.
    assert_eq!(
        reasons(&plan),
        [
            ("skiff-test/debian:12", Some("not built yet")),
            ("skiff-test/busybox:1", None),
            (
                "skiff-test/devcontainers-base:bookworm",
                Some("its base skiff-test/debian:12 is being built")
            ),
            (
                "skiff-test/ubuntu:stand-in",
                Some("its base skiff-test/debian:12 is being built")
            ),
            (
                "skiff-test/devcontainers-base:ubuntu",
                Some("its base skiff-test/devcontainers-base:bookworm is being built")
            ),
            (
                "skiff-test/devcontainers-node:stand-in",
                Some("its base skiff-test/debian:12 is being built")
            ),
            (
                "skiff-test/mongo:stand-in",
                Some("its base skiff-test/debian:12 is being built")
            ),
            ("skiff-test/alpine:stand-in", None),
        ]
    );
}

#[test]
fn plan_rebuilds_an_image_whose_recipe_changed() {
    let plan = plan(IMAGES, false, |tag| {
        let mut existing = up_to_date(tag)?;
        if tag == "skiff-test/busybox:1" {
            existing.fingerprint = String::new();
        }
        Some(existing)
    });
    assert_eq!(plan[1].build.as_deref(), Some("its recipe changed"));
    assert_eq!(plan[2].build, None);
}

#[test]
fn mirror_from_deb822_picks_the_enabled_deb_stanza_for_the_suite() {
    let sources = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
";
    assert_eq!(
        mirror_from_deb822(sources, "bookworm").as_deref(),
        Some("http://deb.debian.org/debian")
    );
    assert_eq!(
        mirror_from_deb822(sources, "bookworm-security").as_deref(),
        Some("http://deb.debian.org/debian-security")
    );
    assert_eq!(mirror_from_deb822(sources, "trixie"), None);

    let disabled = "Types: deb-src deb\nURIs: http://a/debian\nSuites: bookworm\nEnabled: no\n\n\
                    Types: deb-src\nURIs: http://b/debian\nSuites: bookworm\n\n\
                    Types: deb-src deb\nURIs:\n http://c/debian\n http://d/debian\nSuites: bookworm\n";
    assert_eq!(
        mirror_from_deb822(disabled, "bookworm").as_deref(),
        Some("http://c/debian")
    );
}

#[test]
fn mirror_from_one_line_skips_comments_sources_and_options() {
    let list = "\
# deb http://commented/debian bookworm main
deb-src http://source/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://mirror.example/debian bookworm main
";
    assert_eq!(
        mirror_from_one_line(list, "bookworm").as_deref(),
        Some("http://mirror.example/debian")
    );
    assert_eq!(mirror_from_one_line(list, "trixie"), None);
}

#[test]
fn debootstrap_milestones_leave_out_per_package_lines() {
    let output = "\
I: Retrieving InRelease 
I: Checking Release signature
I: Retrieving adduser 3.134
I: Validating adduser 3.134
I: Extracting adduser...
I: Installing core packages...
I: Unpacking required packages...
I: Unpacking adduser...
I: Configuring required packages...
I: Configuring libc-bin...
I: Unpacking the base system...
I: Configuring the base system...
W: Failure trying to run: chroot
I: Base system installed successfully.";
    let shown: Vec<&str> = output
        .lines()
        .filter(|line| is_debootstrap_milestone(line))
        .collect();
    assert_eq!(
        shown,
        [
            "I: Checking Release signature",
            "I: Installing core packages...",
            "I: Unpacking required packages...",
            "I: Configuring required packages...",
            "I: Unpacking the base system...",
            "I: Configuring the base system...",
            "W: Failure trying to run: chroot",
            "I: Base system installed successfully.",
        ]
    );
}

/// A minimal 64-bit little-endian ELF header with one program header of type `program_type`.
fn elf64(program_type: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; 0x40 + 0x38];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    bytes[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
    bytes[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    bytes[0x40..0x44].copy_from_slice(&program_type.to_le_bytes());
    bytes
}

#[test]
fn is_static_elf_looks_for_a_program_interpreter() {
    const PT_LOAD: u32 = 1;
    const PT_INTERP: u32 = 3;
    assert_eq!(is_static_elf(&elf64(PT_LOAD)), Some(true));
    assert_eq!(is_static_elf(&elf64(PT_INTERP)), Some(false));
    assert_eq!(is_static_elf(b"#!/bin/sh\n"), None);
    assert_eq!(is_static_elf(&elf64(PT_LOAD)[..0x30]), None);
}

#[test]
fn choose_public_never_replaces_an_image_that_is_not_ours() {
    let choice = choose_public(PublicImage::Real, || {
        panic!("pulled over an existing image")
    });
    assert_eq!(choice, PublicChoice::KeepReal);
}

#[test]
fn choose_public_pulls_the_real_image_before_using_a_stand_in() {
    let mut tried = false;
    let choice = choose_public(PublicImage::Absent, || {
        tried = true;
        true
    });
    assert!(tried);
    assert_eq!(choice, PublicChoice::Pulled);
    // With no registry (this machine), the stand-in takes the name.
    assert_eq!(
        choose_public(PublicImage::Absent, || false),
        PublicChoice::StandIn
    );
}

#[test]
fn choose_public_keeps_a_name_our_stand_in_holds_without_pulling() {
    let choice = choose_public(PublicImage::StandIn, || panic!("pulled over our stand-in"));
    assert_eq!(choice, PublicChoice::StandIn);
}

#[test]
fn every_alias_is_a_public_name_and_every_tag_ours() {
    for spec in IMAGES {
        assert!(spec.tag.starts_with("skiff-test/"), "{}", spec.tag);
        for alias in spec.aliases {
            assert!(!alias.starts_with("skiff-test/"), "{alias}");
        }
    }
}
