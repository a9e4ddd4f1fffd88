//! Every user request counted and timed under its route template.

use std::time::Instant;

use actix_web::dev::ServiceResponse;

/// Routes that only machines call to watch the service.
const NOT_USER_TRAFFIC: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

/// Counts and times a user request, answered with `response`, that arrived at `started`.
pub(crate) fn record<B>(metrics: &super::Metrics, response: &ServiceResponse<B>, started: Instant) {
    // Routing put the matched resource's template in the request's app data.
    let route = response
        .request()
        .app_data::<crate::RouteTemplate>()
        .map_or("unmatched", |t| t.0);
    // Probes and scrapes are not user traffic: counted, they would let a canary gate pass
    // on kubelet and Prometheus requests alone, and shape its latency at low weight.
    if NOT_USER_TRAFFIC.contains(&route) {
        return;
    }
    let method = method_label(response.request().method());
    let status = response.status().as_u16();
    metrics.record_request(route, method, status, started.elapsed().as_secs_f64());
}

/// The method as a label from a closed set: a client inventing methods (`FOO1`, `FOO2`, …)
/// must not add series to the exposition.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
