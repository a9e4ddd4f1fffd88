//! A cap on open connections below the process's file limit, idle ones closed first. Without
//! it, enough idle keep-alive connections take every file descriptor and the next client is
//! refused ("Too many open files") while the workers sit idle.
//!
//! Two bounds: past `soft_cap` open connections, each new one closes the connections that
//! have been idle longest (no request in flight for at least [`MIN_IDLE`]); at the hard cap
//! (actix-web's `max_connections`, per worker) the workers stop accepting until one closes,
//! and the kernel's backlog holds the rest. Each connection is registered with a duplicate of
//! its socket (so closing one can never reach a descriptor number the kernel gave to another
//! connection since), which is why a connection counts two descriptors.

use std::any::Any;
use std::collections::HashMap;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::{Extensions, ServiceRequest};

/// A connection is idle, and may be closed for a new one, after this long without a request
/// in flight (so an answer still being written is never cut).
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// Descriptors kept for everything but client connections: database pools, listeners, logs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// The open connections of every worker of one listener.
#[derive(Debug)]
pub struct Connections {
    open: Mutex<HashMap<u64, Tracked>>,
    next_id: AtomicU64,
    soft_cap: usize,
    epoch: Instant,
    closed_idle: AtomicU64,
}

#[derive(Debug)]
struct Tracked {
    /// A duplicate of the connection's socket: shutting it down ends the connection.
    socket: std::net::TcpStream,
    activity: Arc<Activity>,
}

/// Whether a connection has a request in flight, and since when it has none.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` (the registry's) at the last request's end, or the connect.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Kept in the connection's data: registered while the connection lives.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    activity: Arc<Activity>,
    connections: Arc<Connections>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Drops the duplicate socket too.
        self.connections.lock().remove(&self.id);
    }
}

/// The caps for `workers` workers: (soft cap, hard cap per worker). `configured` 0 derives the
/// total from the file limit.
pub fn caps(configured: usize, workers: usize, database_connections: u64) -> (usize, usize) {
    let total = if configured > 0 {
        configured
    } else {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let spare = files.saturating_sub(RESERVED_DESCRIPTORS + database_connections);
        usize::try_from(spare / 2)
            .unwrap_or(usize::MAX)
            .min(100_000)
    };
    let total = total.max(2);
    let soft = total - total / 10;
    (soft, total.div_ceil(workers.max(1)))
}

impl Connections {
    pub fn new(soft_cap: usize) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            soft_cap,
            epoch: Instant::now(),
            closed_idle: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Tracked>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Idle connections closed to make room, since start.
    pub fn closed_idle(&self) -> u64 {
        self.closed_idle.load(Ordering::Relaxed)
    }

    /// actix-web's `on_connect`: registers a TCP connection (others, and a socket that cannot
    /// be duplicated, are left alone) and, past the soft cap, closes the longest idle ones.
    pub fn on_connect(self: &Arc<Self>, connection: &dyn Any, data: &mut Extensions) {
        let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let Ok(socket) = stream.as_fd().try_clone_to_owned() else {
            return;
        };
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            epoch: self.epoch,
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut open = self.lock();
        open.insert(
            id,
            Tracked {
                socket: socket.into(),
                activity: Arc::clone(&activity),
            },
        );
        if open.len() > self.soft_cap {
            self.close_idle(&open, open.len() - self.soft_cap);
        }
        drop(open);
        data.insert(Ticket {
            id,
            activity,
            connections: Arc::clone(self),
        });
    }

    /// Closes up to `count` connections, longest idle first (never one with a request in
    /// flight or idle for less than [`MIN_IDLE`]). Their tickets unregister them as actix-web
    /// drops them.
    fn close_idle(&self, open: &HashMap<u64, Tracked>, count: usize) {
        let now = self.now_ms();
        let min_idle = MIN_IDLE.as_millis() as u64;
        let mut idle: Vec<(u64, &Tracked)> = open
            .values()
            .filter(|t| t.activity.in_flight.load(Ordering::Acquire) == 0)
            .map(|t| (t.activity.idle_since_ms.load(Ordering::Acquire), t))
            .filter(|(since, _)| now.saturating_sub(*since) >= min_idle)
            .collect();
        idle.sort_unstable_by_key(|(since, _)| *since);
        for (_, tracked) in idle.into_iter().take(count) {
            // The peer sees the connection end; actix-web reads its end and drops it.
            if tracked.socket.shutdown(Shutdown::Both).is_ok() {
                self.closed_idle.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The connection marked busy while a request is in flight on it: idle again when dropped
/// (answered, or abandoned by a client that went away).
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Busy {
    /// `None` for a connection that is not registered (not TCP).
    pub(crate) fn of(request: &ServiceRequest) -> Option<Self> {
        let activity = Arc::clone(&request.conn_data::<Ticket>()?.activity);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Self(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since_ms
            .store(activity.now_ms(), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
