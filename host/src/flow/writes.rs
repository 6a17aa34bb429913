//! Group commit: the runner's writes (a send handed over, an answer, a webhook's events) from
//! every task go through one queue, and a writer applies what has queued up while the last
//! group committed in one transaction ([`Store::write_batch`]). A caller still waits for its
//! own write's commit before it acts (sends, answers the webhook), so nothing is acted on that
//! a crash could lose; what changes is that 50 writes cost one BEGIN/COMMIT, not 50.
//!
//! On SQLite only: its one writer serialises the writes anyway. On PostgreSQL each write keeps
//! its own transaction (groups of one): several flows' row locks in one transaction would
//! break the one lock order between nodes.

use super::store::{Backend, Store, Write, Written};
use crate::services::now_ms;
use anyhow::{Result, anyhow};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Writes waiting at most (a caller past it waits for room).
const QUEUE: usize = 4_096;
/// Writes in one transaction at most: a group stays a few milliseconds long.
const GROUP: usize = 256;

struct Pending {
    write: Write,
    answer: oneshot::Sender<Result<Written>>,
}

/// The queue's sending end; the writer task ends when it is dropped.
pub(super) struct Writer {
    queue: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writer on the current runtime.
    pub(super) fn spawn(store: Arc<Store>) -> Writer {
        let group = match store.backend() {
            Backend::Sqlite => GROUP,
            Backend::Postgres => 1,
        };
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, pending, group));
        Writer { queue }
    }

    /// Applies one write, once its group committed.
    pub(super) async fn write(&self, write: Write) -> Result<Written> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { write, answer })
            .await
            .map_err(|_| anyhow!("the store's writer has stopped"))?;
        answered
            .await
            .map_err(|_| anyhow!("the store's writer stopped before answering"))?
    }
}

async fn write_groups(store: Arc<Store>, mut pending: mpsc::Receiver<Pending>, group: usize) {
    let mut batch = Vec::with_capacity(group);
    while pending.recv_many(&mut batch, group).await > 0 {
        let (writes, answers): (Vec<Write>, Vec<_>) =
            batch.drain(..).map(|p| (p.write, p.answer)).unzip();
        let store = store.clone();
        let results =
            match tokio::task::spawn_blocking(move || store.write_batch(now_ms(), &writes)).await {
                Ok(results) => results,
                Err(e) => {
                    let why = format!("the store's writer failed: {e}");
                    answers.iter().map(|_| Err(anyhow!(why.clone()))).collect()
                }
            };
        for (answer, result) in answers.into_iter().zip(results) {
            // A caller that gave up waiting no longer needs its answer.
            let _ = answer.send(result);
        }
    }
}
