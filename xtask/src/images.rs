//! `cargo xtask images`: build the local base images the tests and examples need, without any registry.
//!
//! No registry is reachable where skiff is developed and tested, so every image a test or an example names is built
//! here: a Debian root filesystem made by `debootstrap` and turned into an image by `docker import`, and small
//! images built `FROM` it (or `FROM scratch`) by Docker's classic builder, which never pulls an image it has.
//! [`IMAGES`] is the table of them.
//! Each row's image is built under its own `skiff-test/` name, and stands in for the ordinary names real configs use
//! (`debian:12`, `mcr.microsoft.com/devcontainers/base:bookworm`), so examples and tests name images as usual.
//! A stand-in never takes a public name from an image that is not ours (every image built here carries the
//! fingerprint label, and no other does): where the engine has no image under the name, `docker pull` is tried
//! first (with a short timeout), and only when that fails does the stand-in get the name ([`choose_public`]).
//! The host packages the builds need (`debootstrap`, `busybox-static`) are installed when missing, as root on
//! Debian, else named with the command that installs them.
//!
//! Images are cached by tag: an image is rebuilt only with `--force`, when its tag is missing, when its row's recipe
//! changed (every image carries a fingerprint of its recipe in a label), or when an image it is built `FROM` was
//! rebuilt in the same run.
//! Nothing here pushes, and the only images it removes are ones it built and then replaced.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::{process, setup};

/// Arguments of `cargo xtask images`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rebuild every image, even those whose tag already exists.
    #[arg(long)]
    pub force: bool,
    /// Show which images would be built, and why, without building or tagging anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The Debian mirror debootstrap downloads from [default: the host's apt sources, else http://deb.debian.org/debian].
    #[arg(long, env = "SKIFF_DEBIAN_MIRROR", value_name = "URL")]
    pub mirror: Option<String>,
}

/// One image the tests or examples need: what it is called and how to build it.
#[derive(Debug)]
pub struct ImageSpec {
    /// The name the image is built under and looked up by; the `skiff-test/` prefix marks it as ours.
    pub tag: &'static str,
    /// The ordinary names real configs use, tagged onto the same image whenever this command runs, unless the engine
    /// has (or can pull) the real image under that name.
    pub aliases: &'static [&'static str],
    /// How to build the image.
    pub recipe: Recipe,
}

/// How an [`ImageSpec`] is built.
#[derive(Debug)]
pub enum Recipe {
    /// `debootstrap --variant=minbase` a Debian suite with `include`d extra packages, trim caches and
    /// documentation, and `docker import` the tree with [`DEBIAN_IMPORT_CHANGES`].
    Debootstrap {
        suite: &'static str,
        include: &'static [&'static str],
    },
    /// `docker build` of `dockerfile` by the classic builder, in a context holding `context`.
    /// Its `FROM` lines name `scratch` or an image earlier in [`IMAGES`], because nothing can be pulled.
    Dockerfile {
        dockerfile: &'static str,
        context: &'static [HostFile],
    },
}

/// A file copied from the host into a Dockerfile's build context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFile {
    /// The host's statically linked busybox, as `busybox`.
    StaticBusybox,
}

/// Every image this command builds, in build order: an image comes after the images it is built `FROM`.
pub const IMAGES: &[ImageSpec] = &[
    ImageSpec {
        tag: "skiff-test/debian:12",
        aliases: &["debian:12", "debian:bookworm", "debian:bookworm-slim"],
        recipe: Recipe::Debootstrap {
            suite: "bookworm",
            // `curl` because generated user-data fetches `skiffd` over HTTP; `sudo` for the devcontainers stand-in
            // below, whose Dockerfile should not depend on reaching a Debian mirror; `git` for what a developer
            // does with git in a dev container (identity, credentials, signing); `openssh-client` for git over SSH and SSH
            // signing through a forwarded agent (`ssh-add`, `ssh-keygen -Y sign`); `gnupg` for GPG signing through a
            // forwarded gpg-agent.
            include: &[
                "ca-certificates",
                "curl",
                "git",
                "gnupg",
                "iproute2",
                "openssh-client",
                "passwd",
                "procps",
                "sudo",
            ],
        },
    },
    ImageSpec {
        tag: "skiff-test/busybox:1",
        aliases: &["busybox:latest"],
        recipe: Recipe::Dockerfile {
            dockerfile: BUSYBOX_DOCKERFILE,
            context: &[HostFile::StaticBusybox],
        },
    },
    ImageSpec {
        tag: "skiff-test/devcontainers-base:bookworm",
        aliases: &[
            "mcr.microsoft.com/devcontainers/base:bookworm",
            "mcr.microsoft.com/devcontainers/base:debian",
        ],
        recipe: Recipe::Dockerfile {
            dockerfile: DEVCONTAINERS_BASE_DOCKERFILE,
            context: &[],
        },
    },
    // Stand-ins for the base images the Dev Container reference fixtures name (see tests/it/conformance.rs); each is a
    // local image under the name a fixture uses, and says what it stands in for in a label.
    ImageSpec {
        tag: "skiff-test/ubuntu:stand-in",
        aliases: &["ubuntu:latest", "ubuntu:22.04", "debian:latest"],
        recipe: Recipe::Dockerfile {
            dockerfile: UBUNTU_STAND_IN_DOCKERFILE,
            context: &[],
        },
    },
    ImageSpec {
        tag: "skiff-test/devcontainers-base:ubuntu",
        aliases: &[
            "mcr.microsoft.com/devcontainers/base:ubuntu",
            "mcr.microsoft.com/devcontainers/base:latest",
            "mcr.microsoft.com/vscode/devcontainers/base:ubuntu",
        ],
        recipe: Recipe::Dockerfile {
            dockerfile: DEVCONTAINERS_UBUNTU_STAND_IN_DOCKERFILE,
            context: &[],
        },
    },
    ImageSpec {
        tag: "skiff-test/devcontainers-node:stand-in",
        aliases: &[
            "mcr.microsoft.com/vscode/devcontainers/javascript-node:0-16-bullseye",
            "mcr.microsoft.com/vscode/devcontainers/typescript-node:0-16-bullseye",
            "mcr.microsoft.com/devcontainers/typescript-node:0-16-bullseye",
            "mcr.microsoft.com/devcontainers/javascript-node:1-22-bookworm",
        ],
        recipe: Recipe::Dockerfile {
            dockerfile: NODE_STAND_IN_DOCKERFILE,
            context: &[],
        },
    },
    ImageSpec {
        tag: "skiff-test/mongo:stand-in",
        aliases: &["mongo:latest"],
        recipe: Recipe::Dockerfile {
            dockerfile: MONGO_STAND_IN_DOCKERFILE,
            context: &[],
        },
    },
    ImageSpec {
        tag: "skiff-test/alpine:stand-in",
        aliases: &[
            "alpine:latest",
            "alpine:3.17",
            "mcr.microsoft.com/devcontainers/base:alpine",
        ],
        recipe: Recipe::Dockerfile {
            dockerfile: ALPINE_STAND_IN_DOCKERFILE,
            context: &[],
        },
    },
];

/// Debian standing in for `ubuntu:latest`: the reference fixtures only need a shell, coreutils and apt's layout.
const UBUNTU_STAND_IN_DOCKERFILE: &str = r#"FROM skiff-test/debian:12
LABEL dev.skiff.stand-in="Debian 12 standing in for ubuntu"
"#;

/// The devcontainers base stand-in (user `vscode`, sudo, bash) under the `:ubuntu` and `:latest` names.
const DEVCONTAINERS_UBUNTU_STAND_IN_DOCKERFILE: &str = r#"FROM skiff-test/devcontainers-base:bookworm
LABEL dev.skiff.stand-in="Debian 12 with the devcontainers base user standing in for mcr.microsoft.com/devcontainers/base:ubuntu"
"#;

/// A stand-in for the devcontainers Node.js images: a `node` user (uid 1000) with passwordless sudo and bash, and the
/// metadata label that makes it the remote user. Node.js itself is absent; the fixtures that name these images only run
/// shell commands.
const NODE_STAND_IN_DOCKERFILE: &str = r#"FROM skiff-test/debian:12
RUN set -eux;     useradd --create-home --uid 1000 --user-group --shell /bin/bash node;     echo 'node ALL=(root) NOPASSWD:ALL' > /etc/sudoers.d/node;     chmod 0440 /etc/sudoers.d/node
LABEL devcontainer.metadata='[{"remoteUser":"node"}]'
LABEL dev.skiff.stand-in="Debian 12 with a node user standing in for the devcontainers Node.js images (no Node.js)"
"#;

/// A stand-in for `mongo:latest` as a compose sidecar: a container that stays up. No MongoDB.
const MONGO_STAND_IN_DOCKERFILE: &str = r#"FROM skiff-test/debian:12
LABEL dev.skiff.stand-in="Debian 12 that sleeps, standing in for a mongo sidecar (no MongoDB)"
CMD ["sleep", "infinity"]
"#;

/// A stand-in for `alpine`: the static busybox with the files a root user needs. It has no `apk` and no `adduser`, so
/// it serves Dockerfile stages that are skipped or only run shell built-ins.
const ALPINE_STAND_IN_DOCKERFILE: &str = r#"FROM skiff-test/busybox:1
RUN mkdir -p /etc /root /home /tmp && chmod 1777 /tmp     && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd     && echo 'root:x:0:root' > /etc/group     && echo '3.17.0' > /etc/alpine-release
LABEL dev.skiff.stand-in="busybox standing in for alpine (no apk, no adduser)"
"#;

const BUSYBOX_DOCKERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
"#;

/// A stand-in for `mcr.microsoft.com/devcontainers/base`: a `vscode` user (uid 1000) with passwordless sudo and a
/// bash login shell, and the `devcontainer.metadata` label the real image carries, which makes `vscode` the remote
/// user. Like the real image it leaves `USER` as root; `CMD` stays the base image's `/bin/bash`.
const DEVCONTAINERS_BASE_DOCKERFILE: &str = r#"FROM skiff-test/debian:12
RUN set -eux; \
    useradd --create-home --uid 1000 --user-group --shell /bin/bash vscode; \
    echo 'vscode ALL=(root) NOPASSWD:ALL' > /etc/sudoers.d/vscode; \
    chmod 0440 /etc/sudoers.d/vscode
LABEL devcontainer.metadata='[{"remoteUser":"vscode"}]'
"#;

/// The `docker import --change` instructions that make a debootstrapped tree look like Docker's Debian images.
pub const DEBIAN_IMPORT_CHANGES: &[&str] = &[
    r#"CMD ["/bin/bash"]"#,
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
];

/// Directories of a debootstrapped tree whose contents are removed before import, with the entries kept in each.
/// Package caches and lists make up half of the tree and Docker's Debian images ship without them; docs, man pages
/// and translations are never read by a test.
const DEBIAN_TRIM: &[(&str, &[&str])] = &[
    ("var/cache/apt/archives", &["partial", "lock"]),
    ("var/cache/apt", &["archives"]),
    ("var/lib/apt/lists", &["partial", "lock"]),
    ("usr/share/doc", &[]),
    ("usr/share/info", &[]),
    ("usr/share/locale", &["locale.alias"]),
    ("usr/share/man", &[]),
];

/// The label holding an image's recipe fingerprint, which tells a cached image from a stale one.
const FINGERPRINT_LABEL: &str = "dev.skiff.xtask.fingerprint";

/// The mirror debootstrap uses when the host's apt sources name none for the suite.
const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// Where the host's apt sources live.
const APT_SOURCES: &str = "/etc/apt/sources.list";
const APT_SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// Builds (or finds up to date) every image in [`IMAGES`] and tags each with the aliases [`choose_public`] leaves
/// to it.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    process::output(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]))
        .context("could not reach the Docker engine with `docker version`; is it running?")?;

    let plan = plan(IMAGES, args.force, find_image);
    let missing = missing_host_packages(&plan);
    setup::ensure_missing("these images", &missing, args.dry_run)?;
    if args.dry_run {
        for step in &plan {
            match &step.build {
                Some(reason) => println!("images: {} would be built ({reason})", step.spec.tag),
                None => println!("images: {} is up to date", step.spec.tag),
            }
            name_publicly(step.spec, true)?;
        }
        return Ok(());
    }

    let mut superseded = Vec::new();
    for step in &plan {
        let spec = step.spec;
        if let Some(reason) = &step.build {
            println!("images: {} building ({reason})", spec.tag);
            let image_started = Instant::now();
            build(spec, args)?;
            println!(
                "images: {} built in {:.1}s",
                spec.tag,
                image_started.elapsed().as_secs_f64()
            );
            if let Some(old) = &step.existing {
                superseded.push(old.id.clone());
            }
        } else {
            println!("images: {} is up to date", spec.tag);
        }
        name_publicly(spec, false)?;
    }
    // Children first, so a replaced base image is no longer anyone's parent when its turn comes.
    for id in superseded.iter().rev() {
        remove_if_untagged(id);
    }
    println!("images: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// How long `docker pull` of a public name may take before the stand-in is used instead.
const PULL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the engine has under a public name (an alias of a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicImage {
    /// Nothing.
    Absent,
    /// One of our stand-ins: it carries [`FINGERPRINT_LABEL`], which every image this command builds has.
    StandIn,
    /// Any other image: the real one, or the user's own.
    Real,
}

/// Which image ends up under a public name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicChoice {
    /// The image already there, which is not ours, stays.
    KeepReal,
    /// The real image, just pulled.
    Pulled,
    /// Our stand-in, tagged under the name.
    StandIn,
}

/// Decides what goes under a public name: an image that is not ours is never replaced; where the engine has none,
/// the real one is pulled when `pull` can; only then does the stand-in take the name.
/// A name our stand-in already holds keeps it (and follows a rebuilt stand-in) without trying the registry again.
pub(crate) fn choose_public(found: PublicImage, pull: impl FnOnce() -> bool) -> PublicChoice {
    match found {
        PublicImage::Real => PublicChoice::KeepReal,
        PublicImage::StandIn => PublicChoice::StandIn,
        PublicImage::Absent if pull() => PublicChoice::Pulled,
        PublicImage::Absent => PublicChoice::StandIn,
    }
}

/// Gives `spec`'s image the public names of its aliases that [`choose_public`] leaves to it, and says what each
/// name got; with `dry_run`, only says what it would do (without pulling).
fn name_publicly(spec: &ImageSpec, dry_run: bool) -> anyhow::Result<()> {
    let (mut stand_in, mut pulled, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for alias in spec.aliases {
        let found = find_public(alias);
        if dry_run {
            match found {
                PublicImage::Real => kept.push(*alias),
                PublicImage::StandIn => stand_in.push(*alias),
                PublicImage::Absent => pulled.push(*alias),
            }
            continue;
        }
        match choose_public(found, || pull(alias)) {
            PublicChoice::KeepReal => kept.push(*alias),
            PublicChoice::Pulled => pulled.push(*alias),
            PublicChoice::StandIn => {
                process::output(Command::new("docker").args(["tag", spec.tag, alias]))
                    .with_context(|| format!("{}: tagging it as {alias}", spec.tag))?;
                stand_in.push(*alias);
            }
        }
    }
    let tag = spec.tag;
    if !stand_in.is_empty() {
        println!("images: {tag} also named {}", stand_in.join(", "));
    }
    if !pulled.is_empty() {
        if dry_run {
            println!(
                "images: {tag} would be named {} unless `docker pull` gets the real one",
                pulled.join(", ")
            );
        } else {
            println!(
                "images: pulled the real {} (no stand-in needed)",
                pulled.join(", ")
            );
        }
    }
    if !kept.is_empty() {
        println!(
            "images: left the engine's own {} as they are (not stand-ins)",
            kept.join(", ")
        );
    }
    Ok(())
}

/// What the engine has under the public name `name`.
fn find_public(name: &str) -> PublicImage {
    let format = format!(r#"{{{{index .Config.Labels "{FINGERPRINT_LABEL}"}}}}"#);
    let Ok(output) = process::output(
        Command::new("docker").args(["image", "inspect", "--format", &format, name]),
    ) else {
        return PublicImage::Absent;
    };
    match output.trim() {
        "" | "<no value>" => PublicImage::Real,
        _ => PublicImage::StandIn,
    }
}

/// `docker pull name` within [`PULL_TIMEOUT`]; whether it got the image.
fn pull(name: &str) -> bool {
    let mut docker = Command::new("docker");
    docker
        .args(["pull", "--quiet", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    matches!(
        process::status_within(&mut docker, PULL_TIMEOUT),
        Ok(Some(status)) if status.success()
    )
}

/// One row of the plan: an image and whether (and why) it must be built.
#[derive(Debug)]
pub(crate) struct Step {
    spec: &'static ImageSpec,
    /// The image now under the spec's tag, if any.
    existing: Option<Existing>,
    /// Why the image must be built, or `None` when the existing one is up to date.
    build: Option<String>,
}

/// What Docker has under an image's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Existing {
    id: String,
    /// The value of [`FINGERPRINT_LABEL`], empty when the image has none.
    fingerprint: String,
}

/// Decides which of `specs` to build, given `find` to look up what Docker has under a tag.
pub(crate) fn plan(
    specs: &'static [ImageSpec],
    force: bool,
    find: impl Fn(&str) -> Option<Existing>,
) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for spec in specs {
        let existing = find(spec.tag);
        let rebuilt_base = spec.bases().into_iter().find(|base| {
            steps
                .iter()
                .any(|step| step.spec.tag == *base && step.build.is_some())
        });
        let build = if force {
            Some("--force".to_owned())
        } else if let Some(base) = rebuilt_base {
            Some(format!("its base {base} is being built"))
        } else {
            match &existing {
                None => Some("not built yet".to_owned()),
                Some(existing) if existing.fingerprint != spec.fingerprint() => {
                    Some("its recipe changed".to_owned())
                }
                Some(_) => None,
            }
        };
        steps.push(Step {
            spec,
            existing,
            build,
        });
    }
    steps
}

impl ImageSpec {
    /// The images this one is built `FROM`, other than `scratch`.
    pub fn bases(&self) -> Vec<&'static str> {
        match &self.recipe {
            Recipe::Debootstrap { .. } => Vec::new(),
            Recipe::Dockerfile { dockerfile, .. } => from_images(dockerfile)
                .into_iter()
                .filter(|image| *image != "scratch")
                .collect(),
        }
    }

    /// A short hash of everything that decides the image's contents, stored in [`FINGERPRINT_LABEL`].
    pub fn fingerprint(&self) -> String {
        let mut recipe = String::new();
        match &self.recipe {
            Recipe::Debootstrap { suite, include } => {
                recipe.push_str("debootstrap minbase\n");
                writeln!(recipe, "{suite}\n{}", include.join(",")).ok();
                for (dir, keep) in DEBIAN_TRIM {
                    writeln!(recipe, "trim {dir} keep {}", keep.join(",")).ok();
                }
                for change in DEBIAN_IMPORT_CHANGES {
                    writeln!(recipe, "change {change}").ok();
                }
            }
            Recipe::Dockerfile {
                dockerfile,
                context,
            } => {
                writeln!(recipe, "dockerfile\n{dockerfile}").ok();
                for file in *context {
                    writeln!(recipe, "context {}", file.name()).ok();
                }
            }
        }
        let digest = Sha256::digest(recipe.as_bytes());
        digest[..8].iter().fold(String::new(), |mut hex, byte| {
            write!(hex, "{byte:02x}").ok();
            hex
        })
    }
}

/// The images named by the `FROM` lines of `dockerfile`.
pub(crate) fn from_images(dockerfile: &str) -> Vec<&str> {
    dockerfile
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let instruction = words.next()?;
            if !instruction.eq_ignore_ascii_case("FROM") {
                return None;
            }
            words.find(|word| !word.starts_with("--"))
        })
        .collect()
}

/// What Docker has under `tag`, or `None` when it has nothing.
fn find_image(tag: &str) -> Option<Existing> {
    let format = format!(r#"{{{{.Id}}}} {{{{index .Config.Labels "{FINGERPRINT_LABEL}"}}}}"#);
    let output = process::output(
        Command::new("docker").args(["image", "inspect", "--format", &format, tag]),
    )
    .ok()?;
    let (id, fingerprint) = output.trim().split_once(' ').unwrap_or((output.trim(), ""));
    let fingerprint = match fingerprint {
        "<no value>" => "",
        other => other,
    };
    Some(Existing {
        id: id.to_owned(),
        fingerprint: fingerprint.to_owned(),
    })
}

/// The host packages the planned builds need and the host lacks.
fn missing_host_packages(plan: &[Step]) -> Vec<setup::Missing> {
    let mut missing = Vec::new();
    for step in plan.iter().filter(|step| step.build.is_some()) {
        let tag = step.spec.tag;
        match &step.spec.recipe {
            Recipe::Debootstrap { .. } => {
                if !setup::is_present(setup::Probe::Programs(&["debootstrap"])) {
                    missing.push(setup::Missing {
                        package: "debootstrap",
                        why: tag.to_owned(),
                    });
                }
            }
            Recipe::Dockerfile { context, .. } => {
                for file in *context {
                    if let Err(err) = file.source() {
                        missing.push(setup::Missing {
                            package: file.package(),
                            why: format!("{tag}, which needs {err:#}"),
                        });
                    }
                }
            }
        }
    }
    missing
}

/// Builds `spec` under its tag, labelled with its fingerprint.
fn build(spec: &ImageSpec, args: &Args) -> anyhow::Result<()> {
    let fingerprint = spec.fingerprint();
    let label = format!("{FINGERPRINT_LABEL}={fingerprint}");
    match &spec.recipe {
        Recipe::Debootstrap { suite, include } => {
            let (mirror, origin) = match &args.mirror {
                Some(mirror) => (mirror.clone(), "--mirror or SKIFF_DEBIAN_MIRROR".to_owned()),
                None => debian_mirror(suite),
            };
            println!("images:   debootstrap {suite} from {mirror} ({origin})");
            let workdir = tempfile::Builder::new()
                .prefix("skiff-xtask-images-")
                .tempdir()
                .context("creating a directory for the root filesystem")?;
            // Declared after `workdir` so it drops first: nothing may stay mounted inside the tree being deleted.
            let rootfs = Rootfs(workdir.path().join("rootfs"));
            let mut debootstrap = Command::new(
                process::find_program("debootstrap").context("debootstrap is not installed")?,
            );
            debootstrap
                .arg("--variant=minbase")
                .arg(format!("--include={}", include.join(",")))
                .arg(suite)
                .arg(&rootfs.0)
                .arg(&mirror);
            process::run_lines(&mut debootstrap, |line| {
                if is_debootstrap_milestone(line) {
                    println!("    {line}");
                }
            })
            .context("debootstrap failed (it needs root and the mirror; try --mirror URL)")?;
            trim(&rootfs.0)?;
            println!("images:   docker import");
            import(&rootfs.0, spec.tag, &label)
        }
        Recipe::Dockerfile {
            dockerfile,
            context,
        } => {
            let workdir = tempfile::Builder::new()
                .prefix("skiff-xtask-images-")
                .tempdir()
                .context("creating a build context")?;
            fs::write(workdir.path().join("Dockerfile"), dockerfile)
                .context("writing the Dockerfile")?;
            for file in *context {
                let source = file.source()?;
                fs::copy(&source, workdir.path().join(file.name())).with_context(|| {
                    format!("copying {} into the build context", source.display())
                })?;
            }
            let mut docker = Command::new("docker");
            // BuildKit may try to resolve `FROM` images against a registry; the classic builder uses local ones.
            docker.env("DOCKER_BUILDKIT", "0").args([
                "build",
                "--force-rm",
                "--label",
                &label,
                "--tag",
                spec.tag,
            ]);
            if args.force {
                docker.arg("--no-cache");
            }
            docker.arg(workdir.path());
            process::run_lines(&mut docker, |line| {
                if line.starts_with("Step ") {
                    println!("    {line}");
                }
            })
        }
    }
}

/// Whether a line of debootstrap's output marks a phase rather than one package.
pub(crate) fn is_debootstrap_milestone(line: &str) -> bool {
    let Some(message) = line.strip_prefix("I: ") else {
        // Warnings and errors.
        return !line.trim().is_empty();
    };
    let per_package = [
        "Retrieving ",
        "Validating ",
        "Extracting ",
        "Unpacking ",
        "Configuring ",
    ]
    .iter()
    .any(|verb| message.starts_with(verb));
    !per_package || message.ends_with("packages...") || message.ends_with("system...")
}

/// The Debian mirror for `suite` from the host's apt sources, and where it came from.
fn debian_mirror(suite: &str) -> (String, String) {
    let mut files = vec![PathBuf::from(APT_SOURCES)];
    if let Ok(entries) = fs::read_dir(APT_SOURCES_DIR) {
        let mut listed: Vec<PathBuf> = entries
            .filter_map(|entry| Some(entry.ok()?.path()))
            .collect();
        listed.sort();
        files.extend(listed);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let mirror = match file.extension().and_then(|extension| extension.to_str()) {
            Some("sources") => mirror_from_deb822(&text, suite),
            Some("list") => mirror_from_one_line(&text, suite),
            _ => None,
        };
        if let Some(mirror) = mirror {
            return (mirror, file.display().to_string());
        }
    }
    (
        DEFAULT_DEBIAN_MIRROR.to_owned(),
        format!("no apt source for {suite} on this host"),
    )
}

/// The first URI of an enabled `deb` stanza for `suite` in a deb822 `.sources` file.
pub(crate) fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
            continue;
        }
        let stanza = stanzas.last_mut()?;
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    stanzas.iter().find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .iter()
                .find(|(key, _)| key == name)
                .map_or("", |(_, value)| value.as_str())
        };
        let enabled = !field("enabled").eq_ignore_ascii_case("no");
        let is_deb = field("types").split_whitespace().any(|kind| kind == "deb");
        let has_suite = field("suites").split_whitespace().any(|name| name == suite);
        if enabled && is_deb && has_suite {
            field("uris").split_whitespace().next().map(str::to_owned)
        } else {
            None
        }
    })
}

/// The URI of the first `deb` line for `suite` in a one-line-style `.list` file.
pub(crate) fn mirror_from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options such as `[arch=amd64 signed-by=…]` may span several words.
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next()? == suite).then(|| uri.to_owned())
    })
}

/// Removes what [`DEBIAN_TRIM`] lists from the tree at `root`.
fn trim(root: &Path) -> anyhow::Result<()> {
    for (dir, keep) in DEBIAN_TRIM {
        let dir = root.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("{}: listing it", dir.display()))?;
            if keep.iter().any(|name| entry.file_name() == *name) {
                continue;
            }
            let path = entry.path();
            let removed = if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("{}: removing it", path.display()))?;
        }
    }
    Ok(())
}

/// `tar -C root -c . | docker import … -`, then tags the result as `tag`.
fn import(root: &Path, tag: &str, label: &str) -> anyhow::Result<()> {
    let mut tar = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("tar: could not start it")?;
    let archive = tar.stdout.take().context("tar: no output pipe")?;
    let mut docker = Command::new("docker");
    docker.arg("import");
    for change in DEBIAN_IMPORT_CHANGES {
        docker.arg("--change").arg(change);
    }
    docker
        .arg("--change")
        .arg(format!("LABEL {label}"))
        .arg("-")
        .stdin(archive);
    // Imported without a tag, so a tree that tar failed to read never gets a name.
    let imported = process::output(&mut docker);
    let tar_status = tar.wait().context("tar: waiting for it")?;
    let id = imported?.trim().to_owned();
    if !tar_status.success() {
        process::output(Command::new("docker").args(["image", "rm", &id])).ok();
        bail!("tar of {} failed ({tar_status})", root.display());
    }
    process::output(Command::new("docker").args(["tag", &id, tag]))
        .with_context(|| format!("{tag}: tagging the imported image {id}"))?;
    Ok(())
}

/// Removes image `id` if no tag names it any more, which is the case for images this command replaced.
fn remove_if_untagged(id: &str) {
    let tags = process::output(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{len .RepoTags}}",
        id,
    ]));
    if tags.is_ok_and(|tags| tags.trim() == "0") {
        match process::output(Command::new("docker").args(["image", "rm", id])) {
            Ok(_) => println!("images: removed the replaced image {id}"),
            Err(_) => {
                println!("images: kept the replaced image {id}; a container or image still uses it")
            }
        }
    }
}

impl HostFile {
    /// The file's name in the build context.
    pub fn name(self) -> &'static str {
        match self {
            HostFile::StaticBusybox => "busybox",
        }
    }

    /// The Debian package that provides the file.
    pub fn package(self) -> &'static str {
        match self {
            HostFile::StaticBusybox => "busybox-static",
        }
    }

    /// Where the file is on this host; the error says what was found instead.
    pub fn source(self) -> anyhow::Result<PathBuf> {
        match self {
            HostFile::StaticBusybox => {
                let mut dynamic = None;
                for candidate in ["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"] {
                    let Ok(bytes) = fs::read(candidate) else {
                        continue;
                    };
                    match is_static_elf(&bytes) {
                        Some(true) => return Ok(PathBuf::from(candidate)),
                        _ => dynamic = Some(candidate),
                    }
                }
                match dynamic {
                    Some(path) => bail!("a static busybox ({path} is dynamically linked)"),
                    None => bail!("a static busybox (none in /bin or /usr/bin)"),
                }
            }
        }
    }
}

/// Whether `bytes` is an ELF executable without a program interpreter (a static one), or `None` if not ELF.
pub(crate) fn is_static_elf(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let little_endian = *bytes.get(5)? == 1;
    let read = |at: usize, width: usize| -> Option<u64> {
        let field = bytes.get(at..at.checked_add(width)?)?;
        let mut value = 0u64;
        for index in 0..width {
            let byte = if little_endian {
                field[width - 1 - index]
            } else {
                field[index]
            };
            value = value << 8 | u64::from(byte);
        }
        Some(value)
    };
    let (header_offset, entry_size, count) = match bytes.get(4)? {
        1 => (read(0x1c, 4)?, read(0x2a, 2)?, read(0x2c, 2)?),
        2 => (read(0x20, 8)?, read(0x36, 2)?, read(0x38, 2)?),
        _ => return None,
    };
    for index in 0..count {
        let at = usize::try_from(header_offset + index * entry_size).ok()?;
        if read(at, 4)? == u64::from(PT_INTERP) {
            return Some(false);
        }
    }
    Some(true)
}

/// A root filesystem being built; dropping it unmounts whatever debootstrap left mounted inside (it mounts `/proc`
/// and `/sys` while configuring packages, and a failed run can leave them behind).
struct Rootfs(PathBuf);

impl Drop for Rootfs {
    fn drop(&mut self) {
        let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
            return;
        };
        let mut inside: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|point| Path::new(point).starts_with(&self.0))
            .collect();
        // Deepest first, so nested mounts go before their parents.
        inside.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in inside {
            if let Err(err) = process::output(Command::new("umount").args(["--lazy", point])) {
                eprintln!("images: {point} is still mounted and could not be unmounted: {err:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
