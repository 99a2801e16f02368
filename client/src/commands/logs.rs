//! `skiff logs NAME`: the dev container's output, optionally followed.

use futures::StreamExt;
use skiff::api::OutputStream;
use tokio::io::AsyncWriteExt;

use crate::cli::LogsArgs;
use crate::provider::{OnStopped, Provider};

pub async fn run(args: LogsArgs) -> anyhow::Result<i32> {
    if args.boot {
        return Provider::find(&args.name, None, &args.agent)
            .await?
            .boot_log(&args.name)
            .await;
    }
    let workspace = super::find_workspace(&args.name)?;
    let provider = Provider::of(&workspace, &args.agent);
    let mut client = if args.follow {
        // Following is waiting for the dev container's output: a stopped workspace is started.
        provider
            .connect(&workspace, OnStopped::of(&workspace, args.start.no_start))
            .await?
    } else {
        // Reading logs is not using the workspace: it must not restart an idle countdown.
        provider.without_activity().agent(&workspace).await?
    };
    let mut logs = Box::pin(client.logs(args.follow, args.tail).await?);
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(chunk) = logs.next().await {
        let (stream, data) = chunk?;
        match stream {
            OutputStream::Stdout => stdout.write_all(&data).await?,
            OutputStream::Stderr => stderr.write_all(&data).await?,
        }
    }
    stdout.flush().await?;
    Ok(0)
}
