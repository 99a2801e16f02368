//! Before a delete: the workspace's files on the agent may hold the only copy of some work (edits made on the
//! instance, commits never pushed). `check_before_delete` asks the agent's `GitState`, shows what would be lost,
//! and lets the delete go on only with `--yes` or a "y" typed at a terminal; without a terminal it refuses and
//! names `--yes`. When the state cannot be read, that is said and treated as work that may be lost.

use std::io::{BufRead, IsTerminal, Write};

use skiff::api::{GitState, capability};

use crate::agent_client::AgentClient;

/// What the delete may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteDecision {
    /// Nothing would be lost; ask as usual.
    NothingToLose,
    /// Work would be lost and the person agreed (`--yes`, or "y" at the prompt); do not ask again.
    Confirmed,
    /// Work would be lost and the person did not agree; keep the workspace.
    Refused,
}

/// Lines saying what a delete would lose, empty when nothing.
pub fn describe_unsaved(state: &GitState) -> Vec<String> {
    let mut lines = Vec::new();
    if state.uncommitted > 0 {
        let more = state.uncommitted as usize > state.uncommitted_paths.len();
        lines.push(format!(
            "{} uncommitted change{}: {}{}",
            state.uncommitted,
            if state.uncommitted == 1 { "" } else { "s" },
            state.uncommitted_paths.join(", "),
            if more { ", …" } else { "" }
        ));
    }
    for branch in &state.unpushed {
        let upstream = branch.upstream.as_ref().map_or_else(
            || "no upstream".to_owned(),
            |upstream| format!("upstream {upstream}"),
        );
        let what = if branch.branch == "HEAD" {
            "detached HEAD".to_owned()
        } else {
            format!("branch {} ({upstream})", branch.branch)
        };
        lines.push(format!(
            "{what}: {} commit{} on no remote",
            branch.commits,
            if branch.commits == 1 { "" } else { "s" }
        ));
    }
    if state.stashes > 0 {
        lines.push(format!(
            "{} stash entr{}",
            state.stashes,
            if state.stashes == 1 { "y" } else { "ies" }
        ));
    }
    lines
}

/// Checks the workspace's files for work a delete would lose, tells the person, and decides (see the module).
pub async fn check_before_delete(
    client: &mut AgentClient,
    name: &str,
    yes: bool,
) -> std::io::Result<DeleteDecision> {
    let state = match client.version().await {
        Ok(version)
            if version
                .capabilities
                .iter()
                .any(|have| have == capability::GIT_STATE) =>
        {
            client.git_state().await.map_err(|error| error.to_string())
        }
        Ok(version) => Err(format!(
            "its agent (version {}) cannot report it",
            version.agent_version
        )),
        Err(error) => Err(error.to_string()),
    };
    let lines = match &state {
        Ok(state) => describe_unsaved(state),
        Err(reason) => vec![format!(
            "could not check for uncommitted or unpushed work: {reason}"
        )],
    };
    if lines.is_empty() {
        return Ok(DeleteDecision::NothingToLose);
    }
    let mut stderr = std::io::stderr().lock();
    writeln!(
        stderr,
        "workspace {name} holds work that may exist nowhere else; deleting it loses:"
    )?;
    for line in &lines {
        writeln!(stderr, "  {line}")?;
    }
    if yes {
        writeln!(stderr, "deleting it anyway (--yes)")?;
        return Ok(DeleteDecision::Confirmed);
    }
    if !std::io::stdin().is_terminal() {
        writeln!(
            stderr,
            "refusing to delete workspace {name}: commit and push first, or pass --yes to delete it anyway"
        )?;
        return Ok(DeleteDecision::Refused);
    }
    write!(stderr, "Delete workspace {name} and this work? [y/N] ")?;
    stderr.flush()?;
    drop(stderr);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(DeleteDecision::Confirmed)
    } else {
        eprintln!("kept workspace {name}");
        Ok(DeleteDecision::Refused)
    }
}
