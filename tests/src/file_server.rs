//! One file served over HTTP on 127.0.0.1: a Feature as a tarball URL, or `skiffd` for user-data to download.

/// Serves one file at `/<name>` on 127.0.0.1 with an `ETag`, answering `If-None-Match` with 304, and counts both
/// answers; stops when dropped.
#[derive(Debug)]
pub struct FileServer {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    downloads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    not_modified: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _server: crate::http::LoopbackServer,
}

impl FileServer {
    /// Serves `content` at `/<name>` until dropped.
    pub fn start(name: &'static str, content: Vec<u8>) -> FileServer {
        use std::io::{BufRead, Write};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let downloads = Arc::new(AtomicUsize::new(0));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let etag = format!("\"{}\"", &crate::sha256_hex(&content)[..16]);
        let (counted, unchanged) = (downloads.clone(), not_modified.clone());
        let server = crate::http::LoopbackServer::start("the file server", move |stream| {
            let mut reader = std::io::BufReader::new(stream);
            let mut request = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                request.push(line.trim_end().to_owned());
            }
            let path_matches = request
                .first()
                .is_some_and(|line| line.starts_with(&format!("GET /{name} ")));
            let fresh = request.iter().any(|line| {
                line.to_ascii_lowercase().starts_with("if-none-match:") && line.contains(&etag)
            });
            let mut stream = reader.into_inner();
            let _ = if !path_matches {
                stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
            } else if fresh {
                unchanged.fetch_add(1, Ordering::SeqCst);
                stream.write_all(
                    format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
            } else {
                counted.fetch_add(1, Ordering::SeqCst);
                stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
                             ETag: {etag}\r\nConnection: close\r\n\r\n",
                            content.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&content))
            };
        });
        FileServer {
            port: server.port,
            downloads,
            not_modified,
            _server: server,
        }
    }

    /// How many times it sent the file, and how many times it answered 304 Not Modified.
    pub fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.downloads.load(Ordering::SeqCst),
            self.not_modified.load(Ordering::SeqCst),
        )
    }
}
