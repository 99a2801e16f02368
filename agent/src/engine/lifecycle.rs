//! Lifecycle commands: each hook's commands in the reference order, at most as often as the reference CLI runs
//! them (its marker files in the container), and where `waitFor` splits them.

use skiff::api::UpPhase;
use skiff::devcontainer::{self, LifecycleCommand, SimpleCommand};

use super::metadata::{self, HookCommand};
use super::process::Sink;
use super::{Engine, EngineError, Events, Target, progress};
use crate::idle;

impl Engine {
    /// Runs the in-container lifecycle `hooks` (a part of [`metadata::HOOKS`]) in the reference order, each at most as
    /// often as the reference does: per hook, the commands of the base image, then of the Features in install order, then
    /// of devcontainer.json.
    pub(super) async fn run_lifecycle(
        &self,
        merged: &metadata::Merged,
        target: &Target,
        config_file: &str,
        hooks: &[&'static str],
        events: &Events,
    ) -> Result<(), EngineError> {
        let created = target.container.created.clone();
        let started = target.container.started_at.clone();
        for &hook in hooks {
            let marker = match hook {
                "postStartCommand" => Some(started.as_str()),
                "postAttachCommand" => None,
                _ => Some(created.as_str()),
            };
            let commands = merged.hook(hook);
            if commands.is_empty() {
                continue;
            }
            // A hook cut short by its container stopping runs again, though its marker says it ran.
            let cut_short = self
                .interrupted_hooks_lock()
                .contains(&(target.container.id.clone(), hook));
            if let Some(marker) = marker
                && !self.claim_marker(target, hook, marker).await?
                && !cut_short
            {
                tracing::debug!(hook, "already ran for this container");
                continue;
            }
            let _busy = self.activity.busy(idle::source::LIFECYCLE);
            let result = self
                .run_hook(commands, target, config_file, hook, events)
                .await;
            let key = (target.container.id.clone(), hook);
            if let Err(error) = &result
                && self.stopped_since(target).await
            {
                self.interrupted_hooks_lock().insert(key);
                return Err(self.stopped_under(&format!("its {hook} ran"), error));
            }
            self.interrupted_hooks_lock().remove(&key);
            result?;
        }
        Ok(())
    }

    fn interrupted_hooks_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<(String, &'static str)>> {
        self.interrupted_hooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one hook's commands (each a command, or a set of named commands run side by side) in order; a command
    /// that fails ends the hook.
    async fn run_hook(
        &self,
        commands: &[HookCommand],
        target: &Target,
        config_file: &str,
        hook: &'static str,
        events: &Events,
    ) -> Result<(), EngineError> {
        for HookCommand { origin, command } in commands {
            let from = if origin == "devcontainer.json" {
                String::new()
            } else {
                format!(" from Feature {origin}")
            };
            progress(events, UpPhase::Lifecycle, format!("running {hook}{from}")).await;
            let runs: Vec<(Option<String>, Vec<String>)> = match command {
                LifecycleCommand::Shell(shell) => vec![(None, shell_command(shell))],
                LifecycleCommand::Exec(argv) => vec![(None, argv.clone())],
                LifecycleCommand::Parallel(named) => named
                    .iter()
                    .map(|(name, command)| {
                        let argv = match command {
                            SimpleCommand::Shell(shell) => shell_command(shell),
                            SimpleCommand::Exec(argv) => argv.clone(),
                        };
                        (Some(name.clone()), argv)
                    })
                    .filter(|(_, argv)| !argv.is_empty())
                    .collect(),
            };
            let runs = runs.into_iter().map(|(name, argv)| {
                let events = events.clone();
                async move {
                    let code = self.run_hook_command(target, argv, &events).await?;
                    Ok::<_, EngineError>((name, code))
                }
            });
            for result in futures::future::join_all(runs).await {
                let (name, code) = result?;
                if code != 0 {
                    let mut detail = name
                        .map(|name| format!(" (command \"{name}\")"))
                        .unwrap_or_default();
                    detail.push_str(&from);
                    return Err(EngineError::Hook {
                        file: config_file.to_owned(),
                        hook,
                        code,
                        detail,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the hook's marker if it does not hold `stamp` yet; true means the hook should run now.
    /// The same test the reference CLI makes, so a container made by either is treated alike.
    async fn claim_marker(
        &self,
        target: &Target,
        hook: &str,
        stamp: &str,
    ) -> Result<bool, EngineError> {
        if stamp.is_empty() {
            return Ok(false);
        }
        let script = format!(
            "mkdir -p \"$HOME/.devcontainer\" && CONTENT=\"$(cat \"$HOME/.devcontainer/.{hook}Marker\" 2>/dev/null || echo ENOENT)\" \
             && [ \"${{CONTENT:-{stamp}}}\" != '{stamp}' ] && echo '{stamp}' > \"$HOME/.devcontainer/.{hook}Marker\""
        );
        let (code, _) = self
            .exec_collect(target, vec!["/bin/sh".into(), "-c".into(), script])
            .await?;
        Ok(code == 0)
    }

    async fn run_hook_command(
        &self,
        target: &Target,
        command: Vec<String>,
        events: &Events,
    ) -> Result<i64, EngineError> {
        let spec = self.process_spec(target, command);
        let (code, _) = self
            .run_to_end(&target.container, spec, Sink::Events(events))
            .await?;
        Ok(code)
    }
}

fn shell_command(shell: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), shell.into()]
}

/// The `waitFor` value a hook is.
/// The in-container hooks `up` waits for (up to and including `waitFor`) and those that run after the dev container is
/// ready. `initializeCommand` runs on the client's machine before `up`, so waiting for it waits for no in-container hook.
pub(super) fn split_at_wait_for(
    wait_for: devcontainer::WaitFor,
) -> (&'static [&'static str], &'static [&'static str]) {
    let waited = match wait_for {
        devcontainer::WaitFor::InitializeCommand => 0,
        devcontainer::WaitFor::OnCreateCommand => 1,
        devcontainer::WaitFor::UpdateContentCommand => 2,
        devcontainer::WaitFor::PostCreateCommand => 3,
        devcontainer::WaitFor::PostStartCommand => 4,
    };
    let hooks: &'static [&'static str] = &metadata::HOOKS;
    hooks.split_at(waited)
}
