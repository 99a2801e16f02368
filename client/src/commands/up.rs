//! `skiff up [PATH]`: reads the folder's devcontainer.json, resolves what belongs to this machine,
//! records the workspace, starts its agent and has the agent build (or reuse) and start the container.

use std::path::Path;

use anyhow::Context as _;
use futures::StreamExt;
use skiff::api::{UpEvent, UpSpec};
use skiff::devcontainer::{self, LifecycleCommand, LocalContext, SimpleCommand};

use crate::cli::UpArgs;
use crate::progress::Progress;
use crate::provider::{Placement, Provider};
use crate::workspace::{ProviderKind, Store, WorkspaceRecord};

pub async fn run(args: UpArgs) -> anyhow::Result<i32> {
    // Checked before anything is made.
    if let Some(url) = &args.dotfiles {
        crate::dotfiles::check_url(url)?;
    }
    if let Some(text) = crate::files::git_url(&args.path) {
        let repository = crate::files::Repository::parse(&text)?;
        return up_from_repository(args, repository).await;
    }
    up_folder(args, None).await
}

/// The local clone of a repository that `up GIT_URL` hands to a local folder's `up`.
struct Cloned<'a> {
    /// The repository's URL.
    url: &'a str,
    /// The workspace's folder in the store, where a yes to trust it is remembered.
    workspace_folder: &'a Path,
    /// The configuration the agent pinned when it cloned: the dev container can write the clone, so its
    /// devcontainer.json is read from there only once (and again with `--rebuild`).
    loaded: devcontainer::LoadedConfig,
}

/// `up` of a folder on this machine: the user's own, or the local clone of a repository (`cloned_from`), whose
/// configuration is the agent's pinned copy and is not trusted until the user says so.
async fn up_folder(args: UpArgs, cloned_from: Option<Cloned<'_>>) -> anyhow::Result<i32> {
    let folder = std::fs::canonicalize(&args.path)
        .with_context(|| format!("workspace folder {}", args.path.display()))?;
    if !folder.is_dir() {
        anyhow::bail!("workspace folder {}: not a folder", folder.display());
    }
    let progress = Progress::new();
    let (loaded, cloned_from) = match cloned_from {
        Some(cloned) => (cloned.loaded, Some((cloned.url, cloned.workspace_folder))),
        None => (devcontainer::load(&folder, args.config.as_deref())?, None),
    };
    for warning in &loaded.warnings {
        progress.warn(&format!("{}: {warning}", loaded.config_file.display()));
    }
    let mut config = loaded.config.clone();
    if let Some((url, workspace_folder)) = cloned_from {
        progress.suspend(|| {
            super::trust::confirm(
                args.name.as_deref().unwrap_or_default(),
                url,
                &loaded.config_file,
                &config,
                true,
                args.trust,
                workspace_folder,
            )
        })?;
    }
    let context = LocalContext::from_process_env(&folder, &loaded.config_file);
    for unknown in devcontainer::substitute_local(&mut config, &context)? {
        progress.warn(&format!(
            "{}: unknown variable {unknown} is left as written",
            loaded.config_file.display()
        ));
    }
    if let Some(timeout) = &args.idle_timeout {
        super::check_idle_timeout(timeout)?;
    }
    let busy_cpu = args
        .busy_cpu
        .as_deref()
        .map(super::parse_percent)
        .transpose()?;

    let store = Store::open_default()?;
    let existing_provider = store
        .find_by_folder(&folder)?
        .map(|existing| (existing.name().to_owned(), existing.record.provider));
    let kind = match (args.provider, existing_provider) {
        (Some(asked), Some((name, existing))) if asked != existing => anyhow::bail!(
            "{} is already workspace {name} on the {existing} provider; leave out --provider, or `skiff delete {name}` first",
            folder.display()
        ),
        (Some(asked), _) => asked,
        (None, Some((_, existing))) => existing,
        (None, None) => Provider::default_kind(&store),
    };
    let provider = Provider::new(kind, &args.agent);
    let placement = Placement {
        args: &args,
        folder: &folder,
        config_file: &loaded.config_file,
        host_requirements: config.host_requirements.as_ref(),
    };
    let Some(mut workspace) = provider.place(&placement, &progress).await? else {
        return Ok(0);
    };
    let dotfiles = dotfiles_for(&mut workspace, &args)?;
    // A provider may have shown steps of its own; the rest of `up` shows its steps anew.
    drop(progress);
    let progress = Progress::new();

    if let Some(command) = &config.initialize_command {
        progress.step("running initializeCommand on this machine");
        run_initialize_command(command, &folder, &loaded.config_file).await?;
    }

    let mut client = provider.ready_agent(&workspace, &args, &progress).await?;
    if let Some(percent) = busy_cpu {
        client.configure(None, Some(percent)).await?;
    }
    let files_folder = provider
        .send_files(&mut workspace, &folder, &progress)
        .await?;
    let spec = UpSpec {
        config_json: serde_json::to_string(&config)?,
        config_file: loaded.config_file.display().to_string(),
        local_folder: folder.display().to_string(),
        files_folder,
        rebuild: args.rebuild,
        registry_logins: registry_logins(&config, &loaded.config_file, &progress),
    };
    drive(&args, &workspace, &config, client, spec, progress, dotfiles).await
}

/// This machine's Docker logins to the registries `config` pulls from, for the agent's pulls; a login that cannot be
/// read is a warning, and the pull goes on without it.
fn registry_logins(
    config: &skiff::devcontainer::DevContainer,
    config_file: &std::path::Path,
    progress: &Progress,
) -> Vec<skiff::api::RegistryLogin> {
    let (logins, warnings) = crate::registry_logins::for_config(config, config_file);
    for warning in &warnings {
        progress.warn(warning);
    }
    logins
}

/// The dotfiles to install for `workspace`: `--dotfiles` (remembered in its record for later `up`s), else the
/// record's, else the global setting.
fn dotfiles_for(
    workspace: &mut crate::workspace::Workspace,
    args: &UpArgs,
) -> anyhow::Result<Option<String>> {
    if let Some(url) = &args.dotfiles {
        if workspace.record.dotfiles.as_ref() != Some(url) {
            workspace.record.dotfiles = Some(url.clone());
            workspace.save()?;
        }
        return Ok(Some(url.clone()));
    }
    if let Some(url) = &workspace.record.dotfiles {
        return Ok(Some(url.clone()));
    }
    let store = Store::open_default()?;
    Ok(crate::dotfiles::GlobalSettings::load(store.root())?.dotfiles)
}

/// `skiff up GIT_URL` for a workspace whose agent runs on another machine: the machine is placed as for a
/// folder, then its agent clones the repository there, so the files come from the git server and not through
/// the tunnel, and the repository's devcontainer.json is read there. The workspace has no folder on this
/// machine; its record is keyed by its folder in skiff's store, as a local clone's is.
async fn up_repository_remote(
    args: UpArgs,
    repository: &crate::files::Repository,
    name: String,
    store: &Store,
    provider: &Provider,
) -> anyhow::Result<i32> {
    let key = store.folder_for(&name);
    if let Ok(existing) = store.get(&name)
        && existing.record.local_folder != key
    {
        anyhow::bail!(
            "workspace {name} already exists for {}; pass --name to give this one another name",
            existing.record.local_folder.display()
        );
    }
    let args = UpArgs {
        name: Some(name.clone()),
        ..args
    };
    // The instance is sized before the repository's configuration is known: its hostRequirements are not
    // read here (the instance type flags and saved defaults are).
    let placement = Placement {
        args: &args,
        folder: &key,
        config_file: Path::new(""),
        host_requirements: None,
    };
    let Some(mut workspace) = provider.place(&placement, &Progress::new()).await? else {
        return Ok(0);
    };
    let dotfiles = dotfiles_for(&mut workspace, &args)?;
    let progress = Progress::new();
    let mut client = provider.ready_agent(&workspace, &args, &progress).await?;
    let url = repository.url.as_str();
    if provider.remote_files_folder(&workspace).is_none() {
        progress.step(&format!("cloning {url} on the instance"));
        let cloned = crate::files::clone_remote(&mut client, repository, &mut |data: &[u8]| {
            progress.output(skiff::api::OutputStream::Stderr, data)
        })
        .await
        .with_context(|| format!("cloning {url} for workspace {name}"))?;
        provider.keep_remote_files_folder(&mut workspace, cloned.files_folder)?;
    }
    let loaded = repository_config(
        &mut client,
        args.config.as_deref(),
        repository,
        args.rebuild,
    )
    .await?;
    for warning in &loaded.warnings {
        progress.warn(&format!("{}: {warning}", loaded.config_file.display()));
    }
    let mut config = loaded.config.clone();
    progress.suspend(|| {
        super::trust::confirm(
            &name,
            url,
            &loaded.config_file,
            &config,
            false,
            args.trust,
            &workspace.folder,
        )
    })?;
    // What the configuration calls the local folder is the clone (its subfolder, for URL#PATH): there is no other copy.
    let workspace_folder = match &repository.subfolder {
        Some(subfolder) => loaded.workspace_folder.join(subfolder),
        None => loaded.workspace_folder.clone(),
    };
    let context = LocalContext::from_process_env(&workspace_folder, &loaded.config_file);
    for unknown in devcontainer::substitute_local(&mut config, &context)? {
        progress.warn(&format!(
            "{}: unknown variable {unknown} is left as written",
            loaded.config_file.display()
        ));
    }
    if config.initialize_command.is_some() {
        progress.warn(
            "initializeCommand is not run: it runs on the machine that has the workspace's folder, and this repository was cloned on the instance only",
        );
    }
    if config.host_requirements.is_some() {
        progress.warn(
            "hostRequirements of a cloned repository are not used to size the instance (it is launched before the clone); pass --instance-type",
        );
    }
    if workspace.record.config_file != loaded.config_file {
        workspace.record.config_file = loaded.config_file.clone();
        workspace.save()?;
    }
    let files_folder = workspace_folder.display().to_string();
    let spec = UpSpec {
        config_json: serde_json::to_string(&config)?,
        config_file: loaded.config_file.display().to_string(),
        local_folder: files_folder.clone(),
        files_folder,
        rebuild: args.rebuild,
        registry_logins: registry_logins(&config, &loaded.config_file, &progress),
    };
    drive(&args, &workspace, &config, client, spec, progress, dotfiles).await
}

/// The devcontainer.json of a repository the agent cloned: `--config` (a path inside the clone, or inside its
/// subfolder for URL#PATH) or the one discovery finds there; the copy the agent pinned at clone time unless
/// `rebuild` asks for the clone's own.
async fn repository_config(
    client: &mut crate::agent_client::AgentClient,
    config: Option<&Path>,
    repository: &crate::files::Repository,
    rebuild: bool,
) -> anyhow::Result<devcontainer::LoadedConfig> {
    let url = &repository.url;
    let text = |path: &Path| -> anyhow::Result<String> {
        path.to_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{}: not UTF-8", path.display()))
    };
    let Some(subfolder) = &repository.subfolder else {
        let config_path = config.map(text).transpose()?;
        return crate::files::fetch_config(client, config_path.as_deref(), rebuild)
            .await
            .with_context(|| format!("reading the devcontainer.json of {url}"));
    };
    // In a subfolder, discovery looks where it would at the top: .devcontainer/devcontainer.json, then
    // .devcontainer.json.
    let candidates = match config {
        Some(path) => vec![subfolder.join(path)],
        None => vec![
            subfolder.join(".devcontainer/devcontainer.json"),
            subfolder.join(".devcontainer.json"),
        ],
    };
    let mut last = None;
    for candidate in &candidates {
        match crate::files::fetch_config(client, Some(&text(candidate)?), rebuild).await {
            Ok(loaded) => return Ok(loaded),
            Err(error) => last = Some(error),
        }
    }
    let error = last.expect("at least one candidate");
    Err(anyhow::Error::new(error).context(format!(
        "reading the devcontainer.json of {url} in its folder {} (looked for {})",
        subfolder.display(),
        candidates
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    )))
}

/// Has the agent build (or reuse) and start the container, showing its progress, then sets the git identity and
/// installs `dotfiles` there; `Ok(0)` once ready (or, with `--forward`, after Ctrl-C).
async fn drive(
    args: &UpArgs,
    workspace: &crate::workspace::Workspace,
    config: &devcontainer::DevContainer,
    mut client: crate::agent_client::AgentClient,
    spec: UpSpec,
    progress: Progress,
    dotfiles: Option<String>,
) -> anyhow::Result<i32> {
    let mut events = Box::pin(client.up(spec).await?);
    let mut ready = false;
    // `--forward`'s forwards, ended when `up` returns.
    let mut forwards = tokio::task::JoinSet::new();
    while let Some(event) = events.next().await {
        let event = event?;
        if ready {
            // The lifecycle commands after `waitFor` run in the agent whether or not this stays; staying shows their
            // output and fails on theirs, as the reference CLI's `up` does.
            match event {
                UpEvent::Progress { message, .. } => eprintln!("{message}"),
                UpEvent::Output { data, .. } => {
                    use std::io::Write as _;
                    let mut stderr = std::io::stderr().lock();
                    let _ = stderr.write_all(&data);
                    let _ = stderr.flush();
                }
                UpEvent::Warning(warning) => eprintln!("warning: {warning}"),
                UpEvent::Ready(_) => {}
            }
            continue;
        }
        match event {
            UpEvent::Progress { message, .. } => progress.step(&message),
            UpEvent::Output { stream, data } => progress.output(stream, &data),
            UpEvent::Warning(warning) => progress.warn(&warning),
            UpEvent::Ready(result) => {
                // Commits made in the dev container carry the same author as this machine's.
                if let Err(warning) = crate::git_identity::apply(&mut client.clone()).await {
                    progress.warn(&warning);
                }
                if let Some(url) = &dotfiles {
                    progress.step(&format!("installing dotfiles from {url}"));
                    let mut show =
                        |data: &[u8]| progress.output(skiff::api::OutputStream::Stderr, data);
                    if let Err(warning) =
                        crate::dotfiles::install(&mut client.clone(), url, &mut show).await
                    {
                        progress.warn(&warning);
                    }
                }
                progress.finish();
                eprintln!(
                    "workspace {} is ready: container {} ({}), {} as {}",
                    workspace.name(),
                    crate::provider::short_id(&result.container_id),
                    if result.created { "created" } else { "reused" },
                    result.workspace_folder,
                    result.remote_user
                );
                println!("{}", workspace.name());
                if args.forward {
                    let plan = super::ports::PortPlan::from_config(config);
                    forwards.spawn(super::ports::forward_while_attached(
                        client.clone(),
                        plan,
                        workspace.folder.clone(),
                        |line| eprintln!("{line}"),
                    ));
                }
                ready = true;
            }
        }
    }
    if !ready {
        anyhow::bail!(
            "the agent ended `up` without saying the container is ready; see `skiff logs {}`",
            workspace.name()
        )
    }
    if args.forward {
        eprintln!("forwarding ports until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    Ok(0)
}

/// Runs `initializeCommand` on this machine, in the workspace folder, as the reference CLI does.
async fn run_initialize_command(
    command: &LifecycleCommand,
    folder: &Path,
    config_file: &Path,
) -> anyhow::Result<()> {
    let commands: Vec<(Option<&str>, Vec<String>)> = match command {
        LifecycleCommand::Shell(shell) => {
            vec![(None, vec!["/bin/sh".into(), "-c".into(), shell.clone()])]
        }
        LifecycleCommand::Exec(argv) => vec![(None, argv.clone())],
        LifecycleCommand::Parallel(named) => named
            .iter()
            .map(|(name, command)| {
                let argv = match command {
                    SimpleCommand::Shell(shell) => {
                        vec!["/bin/sh".into(), "-c".into(), shell.clone()]
                    }
                    SimpleCommand::Exec(argv) => argv.clone(),
                };
                (Some(name.as_str()), argv)
            })
            .collect(),
    };
    let runs = commands
        .into_iter()
        .filter(|(_, argv)| !argv.is_empty())
        .map(|(name, argv)| async move {
            let status = tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir(folder)
                .status()
                .await
                .with_context(|| {
                    format!(
                        "{}: initializeCommand: running {}",
                        config_file.display(),
                        argv[0]
                    )
                })?;
            if status.success() {
                Ok(())
            } else {
                let which = name
                    .map(|name| format!(" (command \"{name}\")"))
                    .unwrap_or_default();
                Err(anyhow::anyhow!(
                    "{}: initializeCommand{which} failed with exit code {}",
                    config_file.display(),
                    status.code().unwrap_or(-1)
                ))
            }
        });
    for result in futures::future::join_all(runs).await {
        result?;
    }
    Ok(())
}

/// `skiff up GIT_URL` on the local provider: the agent clones the repository into its files folder (on this machine,
/// inside the workspace's folder of the store), the devcontainer.json is read through the agent, and the clone
/// then comes up as a local folder does. A workspace whose agent is on another machine clones there instead
/// (`up_repository_remote`).
async fn up_from_repository(
    args: UpArgs,
    repository: crate::files::Repository,
) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    let url = repository.url.clone();
    let name = args.name.clone().unwrap_or_else(|| repository.name());
    let existing = store.get(&name).ok();
    let kind = match (args.provider, &existing) {
        (Some(asked), _) => asked,
        (None, Some(existing)) => existing.record.provider,
        (None, None) => Provider::default_kind(&store),
    };
    let provider = Provider::new(kind, &args.agent);
    if provider.is_remote() {
        return up_repository_remote(args, &repository, name, &store, &provider).await;
    }
    let made_now = existing.is_none();
    let mut workspace = match existing {
        Some(existing)
            if existing.record.provider == ProviderKind::Local
                && existing.record.local_folder.starts_with(&existing.folder) =>
        {
            existing
        }
        Some(existing) => anyhow::bail!(
            "workspace {name} already exists for {}; pass --name to give this one another name",
            existing.record.local_folder.display()
        ),
        None => {
            let mut created = store.create(WorkspaceRecord {
                name: name.clone(),
                provider: ProviderKind::Local,
                local_folder: std::path::PathBuf::new(),
                config_file: std::path::PathBuf::new(),
                idle_timeout: args.idle_timeout.clone().unwrap_or_else(|| "30m".into()),
                aws: None,
                auto_start: true,
                git_credentials: true,
                dotfiles: None,
            })?;
            // Until the clone is in place the workspace's files are its folder in the store, which is the agent's.
            created.record.local_folder = created.folder.clone();
            created.save()?;
            created
        }
    };
    let progress = Progress::new();
    progress.step(&format!("starting the agent of workspace {name}"));
    let mut client = provider.agent(&workspace).await?;
    progress.step(&format!("cloning {url}"));
    let cloned = async {
        let cloned = crate::files::clone_remote(&mut client, &repository, &mut |data: &[u8]| {
            progress.output(skiff::api::OutputStream::Stderr, data)
        })
        .await
        .with_context(|| format!("cloning {url} for workspace {name}"))?;
        let loaded = repository_config(
            &mut client,
            args.config.as_deref(),
            &repository,
            args.rebuild,
        )
        .await?;
        anyhow::Ok((cloned, loaded))
    }
    .await;
    progress.finish();
    let (cloned, loaded) = match cloned {
        Ok(cloned) => cloned,
        Err(error) if made_now => {
            // Nothing but the record and its agent was made for this workspace: neither is left behind.
            provider.discard(workspace, client).await;
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    let files_folder = std::fs::canonicalize(&cloned.files_folder)
        .with_context(|| format!("the clone of {url} at {}", cloned.files_folder))?;
    // For URL#PATH the workspace is that folder of the clone; the configuration is still found from the top.
    let workspace_folder = match &repository.subfolder {
        Some(subfolder) => files_folder.join(subfolder),
        None => files_folder.clone(),
    };
    workspace.record.local_folder = workspace_folder.clone();
    workspace.record.config_file = files_folder.join(
        loaded
            .config_file
            .strip_prefix(&loaded.workspace_folder)
            .unwrap_or(&loaded.config_file),
    );
    workspace.save()?;
    let config = workspace.record.config_file.clone();
    // On this machine the clone is a local folder: the rest is a local folder's `up`, once the user trusts it.
    Box::pin(up_folder(
        UpArgs {
            path: workspace_folder,
            name: Some(name),
            config: Some(config),
            provider: Some(ProviderKind::Local),
            ..args
        },
        Some(Cloned {
            url: &url,
            workspace_folder: &workspace.folder,
            loaded,
        }),
    ))
    .await
}
