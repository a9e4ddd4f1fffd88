//! The attribute catalog: filters, pagination, single attributes.

use crate::common::Backend;
use crate::helpers::spawn_app;

on_both_backends!(
    the_catalog_filters_by_purpose_type_flags_and_text,
    the_catalog_pages_through_every_attribute,
    one_attribute_is_found_by_id_or_code,
    bad_catalog_filters_are_refused,
);

fn codes(reply: &crate::helpers::Reply) -> Vec<String> {
    reply.body["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["code"].as_str().expect("code").to_owned())
        .collect()
}

async fn the_catalog_filters_by_purpose_type_flags_and_text(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        codes(&app.get("/api/v2/attributes?purpose=variant").await),
        ["size"]
    );
    assert_eq!(
        codes(&app.get("/api/v2/attributes?purpose=both").await),
        ["color"]
    );
    assert_eq!(
        codes(&app.get("/api/v2/attributes?type=date").await),
        ["first_registration"]
    );
    assert_eq!(
        codes(&app.get("/api/v2/attributes?searchable=true").await),
        ["brand", "car_make"]
    );
    // Text matches codes and every label: "godi" is in the Serbian label of year.
    assert_eq!(codes(&app.get("/api/v2/attributes?q=godi").await), ["year"]);
    assert_eq!(
        codes(
            &app.get("/api/v2/attributes?q=%D0%BF%D1%80%D0%BE%D0%B1%D0%B5%D0%B3")
                .await
        ),
        ["mileage"]
    );
}

async fn the_catalog_pages_through_every_attribute(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut seen = Vec::new();
    for page in 1..=5 {
        let reply = app
            .get(&format!("/api/v2/attributes?per_page=5&page={page}"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.body["data"]["total"], 23,
            "22 C2C definitions and the size axis"
        );
        seen.extend(codes(&reply));
    }
    assert_eq!(seen.len(), 23);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 23);
    assert!(codes(&app.get("/api/v2/attributes?per_page=5&page=6").await).is_empty());
}

async fn one_attribute_is_found_by_id_or_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let by_code = app.get("/api/v2/attributes/transmission?lang=en").await;
    assert_eq!(by_code.status, 200, "{}", by_code.body);
    assert_eq!(by_code.body["data"]["id"], 2205);
    assert_eq!(by_code.body["data"]["display_name"], "Transmission");
    let by_id = app.get("/api/v2/attributes/2205?lang=en").await;
    assert_eq!(by_id.body, by_code.body);
    let axis = app.get("/api/v2/attributes/size").await;
    assert_eq!(axis.body["data"]["id"], 1_000_002);
    app.get("/api/v2/attributes/wings")
        .await
        .assert_error(404, "errors.attributeNotFound");
}

async fn bad_catalog_filters_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in [
        "type=checkbox",
        "purpose=everything",
        "per_page=0",
        "per_page=201",
        "page=0",
        "filterable=maybe",
        "colour=red",
    ] {
        app.get(&format!("/api/v2/attributes?{query}"))
            .await
            .assert_error(400, "errors.invalidQuery");
    }
}
