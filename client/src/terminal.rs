//! The local terminal: raw mode for interactive sessions, its size, and its resizes.
//! Platform specifics stay here.

use std::io::IsTerminal;

use skiff::api::WindowSize;

/// Puts the terminal in raw mode until dropped, so keys (Ctrl-C included) go to the remote side.
#[derive(Debug)]
pub struct RawMode {
    _private: (),
}

impl RawMode {
    /// Enters raw mode.
    pub fn enable() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(Self { _private: () })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Whether standard input and output are both terminals.
pub fn is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The terminal's size, if there is a terminal.
pub fn window_size() -> Option<WindowSize> {
    let (columns, rows) = crossterm::terminal::size().ok()?;
    Some(WindowSize { columns, rows })
}

/// A stream of the terminal's new sizes, one per SIGWINCH.
pub fn resizes() -> std::io::Result<impl futures::Stream<Item = WindowSize>> {
    let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    Ok(futures::stream::unfold(signal, |mut signal| async move {
        loop {
            signal.recv().await?;
            if let Some(size) = window_size() {
                return Some((size, signal));
            }
        }
    }))
}
