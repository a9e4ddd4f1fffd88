//! The HTTP API of the unified attributes service, as a library: [`Application::build`]
//! prepares everything from [`Settings`] (database, migrations, guardrails, caches, metrics,
//! listeners) and [`Application::run_until_stopped`] serves. The binary only loads settings
//! and calls these.

mod admission;
pub mod auth;
mod body_deadline;
mod capture;
pub mod cohort;
pub mod connections;
pub mod error;
pub mod http_cache;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod routes;
mod routing;
pub mod settings;
pub mod shadow;
pub mod shedding;
mod startup;
mod state;
pub mod telemetry;
mod url_guard;
pub mod views;

pub use crate::routing::{RouteTemplate, registered_routes};
pub use crate::settings::Settings;
pub use crate::startup::{Application, StartupError};
pub use crate::state::{AppState, FlagsInForce};

/// Largest request body accepted (a full replacement of one entity's values).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Listings in the demo dataset loaded on a fresh machine.
const DEMO_LISTINGS: usize = 500;
