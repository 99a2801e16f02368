//! Showing progress: a spinner with the current step on a terminal, plain lines otherwise.
//! Build and lifecycle output always reaches the user unchanged.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use skiff::api::OutputStream;

/// Where progress goes: standard error, so standard output stays for results.
#[derive(Debug)]
pub struct Progress {
    spinner: Option<ProgressBar>,
}

impl Progress {
    /// A spinner when standard error is a terminal, plain lines when it is not.
    pub fn new() -> Self {
        let spinner = std::io::stderr().is_terminal().then(|| {
            let spinner = ProgressBar::new_spinner();
            spinner.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                    .expect("a valid template"),
            );
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner
        });
        Self { spinner }
    }

    /// A new step began.
    pub fn step(&self, message: &str) {
        match &self.spinner {
            Some(spinner) => spinner.set_message(message.to_owned()),
            None => eprintln!("==> {message}"),
        }
    }

    /// Something the user should know, kept on screen.
    pub fn warn(&self, message: &str) {
        self.line(&format!("warning: {message}"));
    }

    /// A line kept on screen above the spinner.
    pub fn line(&self, message: &str) {
        match &self.spinner {
            Some(spinner) => spinner.println(message),
            None => eprintln!("{message}"),
        }
    }

    /// Output of a build or a command, passed on unchanged.
    pub fn output(&self, stream: OutputStream, data: &[u8]) {
        let write = || match stream {
            // Build and hook output is progress, not the command's result: it goes to stderr too.
            OutputStream::Stdout | OutputStream::Stderr => {
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(data);
                let _ = stderr.flush();
            }
        };
        match &self.spinner {
            Some(spinner) => spinner.suspend(write),
            None => write(),
        }
    }

    /// Runs `work` with the spinner off the screen, for a question to the user.
    pub fn suspend<R>(&self, work: impl FnOnce() -> R) -> R {
        match &self.spinner {
            Some(spinner) => spinner.suspend(work),
            None => work(),
        }
    }

    /// Clears the spinner.
    pub fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
