//! `top` on a terminal: the full-screen view, fed by a sampling thread.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    Frame, Rates,
    sample::{Attachments, Sampler},
    view,
};
use crate::{cli::Sampling, process::Shutdown};

/// The full-screen view: a sampling thread reads the maps every interval and sends frames;
/// the UI thread draws the last one and handles keys; SIGTERM (or SIGINT from another
/// process) ends both, with the terminal restored.
pub(super) async fn interactive(attachments: Attachments, sampling: Sampling) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let (frames, received) = mpsc::sync_channel::<Frame>(1);
    let mut sampler = Sampler::new(attachments, sampling.interval);
    let sampling_thread = {
        let (stop, paused) = (Arc::clone(&stop), Arc::clone(&paused));
        tokio::task::spawn_blocking(move || {
            let mut rates = Rates::default();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep((next - now).min(Duration::from_millis(50)));
                    continue;
                }
                next = now + sampling.interval;
                if paused.load(Ordering::Relaxed) {
                    continue;
                }
                let frame = rates.frame(sampler.sample());
                if frames.send(frame).is_err() {
                    return;
                }
            }
        })
    };
    let ui = {
        let (stop, paused) = (Arc::clone(&stop), Arc::clone(&paused));
        tokio::task::spawn_blocking(move || view::run_ui(&received, &stop, &paused, sampling))
    };
    let mut shutdown = Shutdown::new()?;
    let result = tokio::select! {
        result = ui => result,
        _ = shutdown.recv() => {
            stop.store(true, Ordering::Relaxed);
            Ok(Ok(()))
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sampling_thread.await;
    result?
}
