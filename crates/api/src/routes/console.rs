//! The migration console: one read-only page on the listener of the admin API (the internal
//! one when configured), built from the same document as `status` and refreshed by the page
//! itself. Three files compiled into the binary: no build step, nothing fetched from elsewhere.
//! The page holds no secret: it asks for the admin token and sends it only to the status route.

use actix_web::HttpResponse;
use actix_web::http::header;

const PAGE: &str = include_str!("../console/console.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// Only this origin's script, style and status route; never framed.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn answer(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Served from the binary: a new release brings a new page at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /console`
pub async fn page() -> HttpResponse {
    answer("text/html; charset=utf-8", PAGE)
}

/// `GET /console/console.js`
pub async fn script() -> HttpResponse {
    answer("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console/console.css`
pub async fn style() -> HttpResponse {
    answer("text/css; charset=utf-8", STYLE)
}
