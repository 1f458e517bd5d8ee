//! Live pages: one computation per open page kind, shared by every browser showing it.
//!
//! A page kind (a [`Topic`]: the status page, one pool's page as the public or the owning team
//! sees it, one team's page) gets a producer task while at least one browser watches it. The
//! producer recomputes the page's sections when the engine reports a change (at once, after a
//! short pause that merges a burst) and at least every [`TICK`] (changes made by another
//! replica, a hook log that grows), and publishes a new [`Frame`] only when a section's JSON
//! differs. Each reader then sends its browser only the sections that changed since its last
//! message: a quiet page costs its readers nothing, and a busy one costs one computation a
//! tick, not one per browser. The producer ends when its last reader goes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a watched page is recomputed when nothing announces a change.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a burst of changes is let settle before recomputing (longer than the waiting
/// cache reuses an explanation after a change, so the recomputation sees it).
const SETTLE: Duration = Duration::from_millis(150);

/// What one page shows, by what it is about and who looks (sections may differ by viewer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Status {
        range: &'static str,
    },
    /// `owner`: the owning team when the stream opened; its readers are let go if it changes.
    Pool {
        name: String,
        owner: Option<i32>,
        private: bool,
        range: &'static str,
    },
    Team {
        name: String,
    },
}

/// A page's sections as JSON, each with the version it was last changed in.
#[derive(Debug, Default)]
pub struct Frame {
    pub seq: u64,
    pub sections: BTreeMap<&'static str, (u64, Arc<str>)>,
}

/// Sections as a producer computes them; a section left out keeps its last value.
pub type Sections = Vec<(&'static str, String)>;

/// What one computation of a page gave.
pub enum Computed {
    Sections(Sections),
    /// It could not be computed this time (logged); readers keep what they have.
    Failed,
    /// The page is no more, or no longer what its readers were allowed to see: every reader's
    /// stream ends (a browser reconnects, and is authorized again).
    Gone,
}

/// A topic's channel and the task that fills it.
type Producer = (watch::Sender<Arc<Frame>>, tokio::task::JoinHandle<()>);

/// The live pages of this process.
#[derive(Debug, Default)]
pub struct Live {
    topics: Mutex<HashMap<Topic, Producer>>,
    stop: CancellationToken,
}

impl Live {
    /// Follows `topic`, starting its producer if nobody follows it yet. `compute` is called
    /// with `true` when slow sections (charts) should be included too; `changes` announces
    /// that something changed.
    pub fn follow<F, Fut>(
        self: &Arc<Self>,
        topic: Topic,
        changes: watch::Receiver<u64>,
        compute: F,
    ) -> Reader
    where
        F: Fn(bool) -> Fut + Send + 'static,
        Fut: Future<Output = Computed> + Send + 'static,
    {
        let mut topics = self.topics.lock().expect("live topics");
        // A producer that died (a panic) is replaced; its readers' streams end with it.
        if let Some((tx, task)) = topics.get(&topic)
            && !task.is_finished()
        {
            return Reader::new(tx.subscribe(), self.stop.clone());
        }
        let (tx, rx) = watch::channel(Arc::new(Frame::default()));
        let task = tokio::spawn(produce(
            self.clone(),
            topic.clone(),
            tx.clone(),
            changes,
            compute,
        ));
        topics.insert(topic, (tx, task));
        Reader::new(rx, self.stop.clone())
    }

    /// How many page kinds are followed now.
    pub fn topics(&self) -> usize {
        self.topics.lock().expect("live topics").len()
    }

    /// Ends every stream (the server is shutting down: open streams would hold it up).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Forgets `topic` if nobody follows it (or `always`); says whether it did. Only the
    /// entry of this producer's channel is removed, never a successor's.
    fn retire(&self, topic: &Topic, tx: &watch::Sender<Arc<Frame>>, always: bool) -> bool {
        let mut topics = self.topics.lock().expect("live topics");
        if tx.receiver_count() > 0 && !always && !self.stop.is_cancelled() {
            return false;
        }
        if topics
            .get(topic)
            .is_some_and(|(current, _)| current.same_channel(tx))
        {
            topics.remove(topic);
        }
        true
    }
}

/// Charts and other slow sections are recomputed at most this often.
const SLOW_EVERY: Duration = Duration::from_secs(5);

async fn produce<F, Fut>(
    live: Arc<Live>,
    topic: Topic,
    tx: watch::Sender<Arc<Frame>>,
    mut changes: watch::Receiver<u64>,
    compute: F,
) where
    F: Fn(bool) -> Fut + Send + 'static,
    Fut: Future<Output = Computed> + Send,
{
    let mut last: BTreeMap<&'static str, (u64, Arc<str>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut slow_at: Option<tokio::time::Instant> = None;
    loop {
        let slow = slow_at.is_none_or(|t| t.elapsed() >= SLOW_EVERY);
        let computed = compute(slow).await;
        if let Computed::Gone = computed {
            // Dropping the channel ends every reader's stream.
            live.retire(&topic, &tx, true);
            return;
        }
        if let Computed::Sections(sections) = computed {
            if slow {
                slow_at = Some(tokio::time::Instant::now());
            }
            let mut changed = false;
            for (name, json) in sections {
                if last.get(name).is_none_or(|(_, old)| **old != *json) {
                    seq += 1;
                    last.insert(name, (seq, Arc::from(json)));
                    changed = true;
                }
            }
            if changed {
                tx.send_replace(Arc::new(Frame {
                    seq,
                    sections: last.clone(),
                }));
            }
        }
        if tx.receiver_count() == 0 && live.retire(&topic, &tx, false) {
            return;
        }
        tokio::select! {
            moved = changes.changed() => {
                if moved.is_err() {
                    // The engine is gone: ticking is all that is left.
                    tokio::time::sleep(TICK).await;
                } else {
                    tokio::time::sleep(SETTLE).await;
                }
            }
            _ = tokio::time::sleep(TICK) => {}
            _ = tx.closed() => {}
            _ = live.stop.cancelled() => {
                live.retire(&topic, &tx, true);
                return;
            }
        }
    }
}

/// One browser's view of a topic: what it was last sent.
pub struct Reader {
    rx: watch::Receiver<Arc<Frame>>,
    sent: BTreeMap<&'static str, u64>,
    stop: CancellationToken,
}

impl Reader {
    fn new(mut rx: watch::Receiver<Arc<Frame>>, stop: CancellationToken) -> Reader {
        // What is there already is news to this reader.
        rx.mark_changed();
        Reader {
            rx,
            sent: BTreeMap::new(),
            stop,
        }
    }

    /// The next message for this browser: a JSON object holding only the sections that
    /// changed since its last one, with the frame's sequence number. `None` once the topic
    /// or the server ends.
    pub async fn next(&mut self) -> Option<(u64, String)> {
        loop {
            tokio::select! {
                moved = self.rx.changed() => moved.ok()?,
                _ = self.stop.cancelled() => return None,
            }
            let frame = self.rx.borrow_and_update().clone();
            let mut body = String::from("{");
            for (name, (version, json)) in &frame.sections {
                if self.sent.get(name) == Some(version) {
                    continue;
                }
                if body.len() > 1 {
                    body.push(',');
                }
                body.push('"');
                body.push_str(name);
                body.push_str("\":");
                body.push_str(json);
                self.sent.insert(name, *version);
            }
            if body.len() > 1 {
                body.push('}');
                return Some((frame.seq, body));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[tokio::test]
    async fn readers_get_only_what_changed_and_the_producer_ends_with_them() {
        let live = Arc::new(Live::default());
        let (bump, changes) = watch::channel(0u64);
        let queue = Arc::new(AtomicU64::new(1));
        let computed = Arc::new(AtomicU64::new(0));
        let follow = || {
            let (queue, computed) = (queue.clone(), computed.clone());
            live.follow(Topic::Status { range: "24h" }, changes.clone(), move |_| {
                let (queue, computed) = (queue.clone(), computed.clone());
                async move {
                    computed.fetch_add(1, Ordering::SeqCst);
                    Computed::Sections(vec![
                        ("pools", "[\"a\"]".to_string()),
                        ("queue", format!("[{}]", queue.load(Ordering::SeqCst))),
                    ])
                }
            })
        };
        let mut first = follow();
        let (_, body) = first.next().await.unwrap();
        assert_eq!(body, r#"{"pools":["a"],"queue":[1]}"#);
        let mut second = follow();
        assert_eq!(live.topics(), 1, "one producer for both");
        let (_, body) = second.next().await.unwrap();
        assert_eq!(
            body, r#"{"pools":["a"],"queue":[1]}"#,
            "a newcomer gets everything"
        );

        queue.store(2, Ordering::SeqCst);
        bump.send_modify(|n| *n += 1);
        let (_, body) = first.next().await.unwrap();
        assert_eq!(body, r#"{"queue":[2]}"#, "only the section that changed");
        let (_, body) = second.next().await.unwrap();
        assert_eq!(body, r#"{"queue":[2]}"#);

        drop(first);
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), async {
            while live.topics() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the producer ends when its last reader goes");
        let after = computed.load(Ordering::SeqCst);
        tokio::time::sleep(TICK * 2).await;
        assert_eq!(
            computed.load(Ordering::SeqCst),
            after,
            "nothing computed for nobody"
        );
    }

    #[tokio::test]
    async fn stopping_ends_every_reader() {
        let live = Arc::new(Live::default());
        let (_bump, changes) = watch::channel(0u64);
        let mut reader = live.follow(Topic::Team { name: "t".into() }, changes, |_| async {
            Computed::Sections(vec![("pools", "[]".to_string())])
        });
        assert!(reader.next().await.is_some());
        live.stop();
        assert_eq!(reader.next().await, None);
    }

    #[tokio::test]
    async fn a_page_that_is_gone_ends_its_readers_and_a_newcomer_starts_afresh() {
        let live = Arc::new(Live::default());
        let (bump, changes) = watch::channel(0u64);
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let follow = || {
            let gone = gone.clone();
            live.follow(
                Topic::Team { name: "t".into() },
                changes.clone(),
                move |_| {
                    let gone = gone.load(Ordering::SeqCst);
                    async move {
                        if gone {
                            Computed::Gone
                        } else {
                            Computed::Sections(vec![("pools", "[]".to_string())])
                        }
                    }
                },
            )
        };
        let mut reader = follow();
        assert!(reader.next().await.is_some());
        gone.store(true, Ordering::SeqCst);
        bump.send_modify(|n| *n += 1);
        assert_eq!(reader.next().await, None, "the stream ends");
        gone.store(false, Ordering::SeqCst);
        let mut newcomer = follow();
        assert!(
            newcomer.next().await.is_some(),
            "a new producer serves the newcomer"
        );
    }
}
