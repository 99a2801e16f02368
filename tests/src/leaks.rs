//! What a sandbox's local workspaces made on the Docker engine, and what of it a `skiff delete` left behind.
//!
//! A sandbox's own things are found by its folder, never by a name another test could share: its dev containers
//! are the ones labelled `skiff.workspace` that mount something under the sandbox's folder; a compose project is
//! one such container's `com.docker.compose.project` (its other containers, its named volumes and its network go
//! with it); its images are the agent's image names for the sandbox's workspace folders (`engine::image_tag`)
//! and the images compose built for the project.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_agent::engine::{LABEL_COMPOSE_PROJECT as LABEL_PROJECT, LABEL_WORKSPACE, image_tag};

/// What the sandbox's workspaces have on the engine, seen before they are deleted.
#[derive(Debug, Default)]
pub(crate) struct Made {
    containers: BTreeSet<String>,
    projects: BTreeSet<String>,
    image_prefixes: BTreeSet<String>,
}

/// The lines `docker ARGS` prints; nothing when it fails (an engine that is not there has nothing left on it).
fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Made {
    /// Looks on the engine for what the workspaces under `root` made; `local_folders` are their folders.
    pub(crate) fn find(root: &Path, local_folders: &[PathBuf]) -> Self {
        let root = root.to_string_lossy().into_owned();
        let mut made = Self {
            image_prefixes: local_folders
                .iter()
                .map(|folder| image_tag(folder))
                .collect(),
            ..Self::default()
        };
        let ids = docker_lines(&[
            "ps",
            "--all",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label={LABEL_WORKSPACE}"),
        ]);
        if ids.is_empty() {
            return made;
        }
        let format = format!(
            "{{{{.Id}}}}\t{{{{index .Config.Labels \"{LABEL_PROJECT}\"}}}}\t{{{{range .Mounts}}}}{{{{.Source}}}}\t{{{{end}}}}"
        );
        let mut args = vec!["inspect", "--format", &format];
        args.extend(ids.iter().map(String::as_str));
        // Containers of other tests may go meanwhile: `inspect` still prints the ones it found.
        for line in docker_lines(&args) {
            let mut fields = line.split('\t');
            let (Some(id), Some(project)) = (fields.next(), fields.next()) else {
                continue;
            };
            if fields.any(|source| source.starts_with(&root)) {
                made.containers.insert(id.to_owned());
                if !project.is_empty() && project != "<no value>" {
                    made.projects.insert(project.to_owned());
                }
            }
        }
        made
    }

    /// What of it is still on the engine, one line per thing.
    pub(crate) fn left(&self) -> Vec<String> {
        let mut left = Vec::new();
        let existing: BTreeSet<String> = docker_lines(&["ps", "--all", "--quiet", "--no-trunc"])
            .into_iter()
            .collect();
        for id in self.containers.intersection(&existing) {
            left.push(format!("container {id}"));
        }
        for project in &self.projects {
            let label = format!("label={LABEL_PROJECT}={project}");
            for id in docker_lines(&["ps", "--all", "--quiet", "--filter", &label]) {
                left.push(format!("container {id} of compose project {project}"));
            }
            for volume in docker_lines(&["volume", "ls", "--quiet", "--filter", &label]) {
                left.push(format!("volume {volume} of compose project {project}"));
            }
            for network in docker_lines(&[
                "network",
                "ls",
                "--format",
                "{{.Name}}",
                "--filter",
                &format!("name=^{project}_default$"),
            ]) {
                left.push(format!("network {network}"));
            }
        }
        let compose_prefixes = self
            .projects
            .iter()
            .flat_map(|project| [format!("{project}-"), format!("{project}_")]);
        let prefixes: Vec<String> = self
            .image_prefixes
            .iter()
            .cloned()
            .chain(compose_prefixes)
            .collect();
        for image in docker_lines(&["images", "--format", "{{.Repository}}:{{.Tag}}"]) {
            if prefixes
                .iter()
                .any(|prefix| image.starts_with(prefix.as_str()))
            {
                left.push(format!("image {image}"));
            }
        }
        left
    }

    /// Removes what is left, so one test's leak does not pile up on the engine.
    pub(crate) fn remove(left: &[String]) {
        for thing in left {
            let mut words = thing.split(' ');
            let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            let args: &[&str] = match kind {
                "container" => &["rm", "--force", "--volumes", name],
                "volume" => &["volume", "rm", "--force", name],
                "network" => &["network", "rm", name],
                "image" => &["image", "rm", "--force", name],
                _ => continue,
            };
            let _ = Command::new("docker").args(args).output();
        }
    }
}
