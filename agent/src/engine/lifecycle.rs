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
            if let Some(marker) = marker {
                match self.claim_marker(target, hook, marker).await? {
                    Claim::Run => {}
                    Claim::Done => {
                        tracing::debug!(hook, "already ran for this container");
                        continue;
                    }
                    Claim::Interrupted => {
                        progress(
                            events,
                            UpPhase::Lifecycle,
                            format!("{hook} was cut short last time (the agent or its container stopped while it ran); running it again"),
                        )
                        .await;
                    }
                }
            }
            let _busy = self.activity.busy(idle::source::LIFECYCLE);
            let ran = self
                .run_hook(target, hook, commands, config_file, events)
                .await;
            if let Err(error) = &ran
                && self.stopped_since(target).await
            {
                // The container stopped under the hook (Docker restarted): its Running marker stays, so the next
                // `up` runs it again.
                return Err(self.stopped_under(&format!("its {hook} ran"), error));
            }
            if marker.is_some() {
                // Finished, well or not: only a run the agent did not see to its end is run again.
                self.release_marker(target, hook).await?;
            }
            ran?;
        }
        Ok(())
    }

    /// Runs one hook's commands in order (a parallel command's parts at once); the first that fails ends it.
    async fn run_hook(
        &self,
        target: &Target,
        hook: &'static str,
        commands: &[HookCommand],
        config_file: &str,
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

    /// Writes the hook's marker if it does not hold `stamp` yet (the same test the reference CLI makes, so a
    /// container made by either is treated alike), and beside it a `Running` marker that [`Self::release_marker`]
    /// removes when the hook ends: one still there means the agent stopped while the hook ran (killed, or its
    /// machine rebooted), and the hook runs again rather than leave the container half set up.
    async fn claim_marker(
        &self,
        target: &Target,
        hook: &str,
        stamp: &str,
    ) -> Result<Claim, EngineError> {
        if stamp.is_empty() {
            return Ok(Claim::Done);
        }
        let script = format!(
            "mkdir -p \"$HOME/.devcontainer\" && M=\"$HOME/.devcontainer/.{hook}Marker\" && R=\"$HOME/.devcontainer/.{hook}Running\" \
             && CONTENT=\"$(cat \"$M\" 2>/dev/null || echo ENOENT)\" \
             && if [ \"${{CONTENT:-{stamp}}}\" != '{stamp}' ]; then echo '{stamp}' > \"$R\" && echo '{stamp}' > \"$M\" && exit 0; fi; \
             [ \"$(cat \"$R\" 2>/dev/null)\" = '{stamp}' ] && exit 3; exit 1"
        );
        let (code, _) = self
            .exec_collect(target, vec!["/bin/sh".into(), "-c".into(), script])
            .await?;
        Ok(match code {
            0 => Claim::Run,
            3 => Claim::Interrupted,
            _ => Claim::Done,
        })
    }

    /// Removes the hook's `Running` marker: it ended, whatever its outcome.
    async fn release_marker(&self, target: &Target, hook: &str) -> Result<(), EngineError> {
        let script = format!("rm -f \"$HOME/.devcontainer/.{hook}Running\"");
        self.exec_collect(target, vec!["/bin/sh".into(), "-c".into(), script])
            .await?;
        Ok(())
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

/// What a hook's markers say.
enum Claim {
    /// Not run for this container yet (now claimed): run it.
    Run,
    /// Run to its end already.
    Done,
    /// Started and never seen to its end: run it again.
    Interrupted,
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
