//! The API answers as /openapi.json says: regressions for what schemathesis found (issue 8).
//! Each test shows a request the document calls valid being accepted, or one it calls invalid
//! being refused, where the service used to disagree.

use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    auth_helpers::{
        authed, make_admin, post_authed, register_customer, register_developer, unique_email,
        PASSWORD,
    },
    helpers::{assert_problem, Backend, TestApp},
    on_both_backends,
};

on_both_backends!(
    a_page_size_beyond_the_documented_maximum_is_refused_not_clamped,
    a_page_number_of_zero_or_a_non_number_is_refused_naming_the_parameter,
    lifting_a_ban_on_something_that_is_not_an_address_is_a_404,
    an_admin_cannot_ban_the_address_of_their_own_request,
    a_refresh_with_a_json_null_body_reads_the_cookie,
    a_struct_body_sent_as_an_array_is_refused,
    an_unknown_link_token_is_a_401_and_a_wrong_current_password_a_403,
    registration_takes_the_documented_email_and_role_spellings_only,
    names_refuse_invisible_formatting_characters_and_keep_ordinary_names,
    lookalike_and_unusable_addresses_cannot_register_beside_the_real_one,
    a_profile_field_of_another_role_is_a_403_on_patch_me,
    a_name_that_is_no_profile_field_is_refused_even_when_its_value_is_null,
    the_v2_registration_checks_every_field_it_was_given,
    every_guarded_operation_documents_its_edge_answers_and_no_catch_all,
);

async fn a_page_size_beyond_the_documented_maximum_is_refused_not_clamped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    for path in [
        "/api/admin/users",
        "/api/admin/audit",
        "/api/admin/jobs",
        "/api/auth/activity",
    ] {
        for bad in ["101", "2147483648", "0", "-1"] {
            let res = authed(
                &app,
                Method::GET,
                &format!("{path}?per_page={bad}"),
                &admin.access,
            )
            .send()
            .await
            .unwrap();
            let body = assert_problem(res, 422).await;
            assert_eq!(body["errors"][0]["field"], "per_page", "{path} {body}");
        }
        let res = authed(
            &app,
            Method::GET,
            &format!("{path}?per_page=100"),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap()["per_page"], 100);
    }
}

async fn a_page_number_of_zero_or_a_non_number_is_refused_naming_the_parameter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    for bad in ["0", "x", "1.5", "+1", "4294967296"] {
        let res = authed(
            &app,
            Method::GET,
            &format!("/api/admin/users?page={bad}"),
            &admin.access,
        )
        .send()
        .await
        .unwrap();
        let body = assert_problem(res, 422).await;
        assert_eq!(body["errors"][0]["field"], "page", "{bad}: {body}");
    }
    let res = authed(
        &app,
        Method::GET,
        "/api/admin/users?page=4294967295",
        &admin.access,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["items"], json!([]));
}

async fn lifting_a_ban_on_something_that_is_not_an_address_is_a_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    for path in ["/api/admin/bans/0", "/api/admin/bans/not-an-ip"] {
        let res = authed(&app, Method::DELETE, path, &admin.access)
            .send()
            .await
            .unwrap();
        assert_problem(res, 404).await;
    }
}

async fn an_admin_cannot_ban_the_address_of_their_own_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let res = post_authed(
        &app,
        "/api/admin/bans",
        &admin.access,
        &json!({"ip": "127.0.0.1", "reason": "testing"}),
    )
    .await;
    assert_problem(res, 409).await;
    // Nothing was banned: the admin still gets through.
    let res = authed(&app, Method::GET, "/api/admin/bans", &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["bans"], json!([]));
    for bad in [
        json!({"ip": "", "reason": "x"}),
        json!({"ip": "203.0.113.7", "reason": "   "}),
        json!({"ip": "203.0.113.7", "reason": "two\nlines"}),
    ] {
        let res = post_authed(&app, "/api/admin/bans", &admin.access, &bad).await;
        assert_problem(res, 422).await;
    }
}

async fn a_refresh_with_a_json_null_body_reads_the_cookie(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // No cookie: the same answer as with no body at all.
    let res = app
        .client
        .post(app.url("/api/auth/refresh"))
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 401).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("No refresh token"),
        "{body}"
    );
}

async fn a_struct_body_sent_as_an_array_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = make_admin(&app).await;
    let user = register_customer(&app).await;
    let res = authed(
        &app,
        Method::PATCH,
        &format!("/api/admin/users/{}", user.user_id),
        &admin.access,
    )
    .json(&json!([null, null]))
    .send()
    .await
    .unwrap();
    assert_problem(res, 422).await;
    let res = app
        .post_json("/api/auth/login", &json!([user.email, PASSWORD]))
        .await;
    assert_problem(res, 422).await;
}

async fn an_unknown_link_token_is_a_401_and_a_wrong_current_password_a_403(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, body) in [
        (
            "/api/auth/password-reset/confirm",
            json!({"token": "no-such-token", "new_password": "granite-meadow-pelican-harbor-77"}),
        ),
        (
            "/api/auth/verify-email/confirm",
            json!({"token": "no-such-token"}),
        ),
    ] {
        assert_problem(app.post_json(path, &body).await, 401).await;
    }
    let user = register_customer(&app).await;
    let res = post_authed(
        &app,
        "/api/auth/change-password",
        &user.access,
        &json!({"current_password": "not-the-password", "new_password": "granite-meadow-pelican-harbor-77"}),
    )
    .await;
    assert_problem(res, 403).await;
    // The session is kept: a wrong step-up proof is not a sign-out.
    let res = authed(&app, Method::GET, "/api/auth/me", &user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn registration_takes_the_documented_email_and_role_spellings_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let register = |email: String, role: &'static str| json!({"email": email, "password": PASSWORD, "first_name": "Thandi", "role": role});
    for (email, role) in [
        (format!(" {}", unique_email("space")), "customer"),
        (unique_email("role"), "Developer"),
        (unique_email("role"), " customer"),
        ("\"bob\"@example.com".to_owned(), "customer"),
        ("bob@exa\u{200b}mple.com".to_owned(), "customer"),
    ] {
        let res = app
            .post_json("/api/auth/register", &register(email.clone(), role))
            .await;
        assert_problem(res, 422).await;
    }
    let email = unique_email("Mixed.Case").replace("example.com", "Example.COM");
    let res = app
        .post_json("/api/auth/register", &register(email.clone(), "client"))
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["email"], email.to_ascii_lowercase());
    assert_eq!(body["user"]["role"], "customer");
}

async fn names_refuse_invisible_formatting_characters_and_keep_ordinary_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = register_customer(&app).await;
    for bad in [
        "",
        "   ",
        "Bo\u{200d}b",
        "Bo\u{ad}b",
        "Bo\u{2060}b",
        "Bob\u{2028}",
        "Bo\u{e0041}b",
    ] {
        let res = authed(&app, Method::PATCH, "/api/auth/me", &user.access)
            .json(&json!({"first_name": bad}))
            .send()
            .await
            .unwrap();
        let body = assert_problem(res, 422).await;
        assert_eq!(body["errors"][0]["field"], "first_name", "{bad:?}: {body}");
    }
    for good in ["Zoë", "Ngũgĩ", "Łukasz", "Ελένη", "Jean-Luc O'Neill"] {
        let res = authed(&app, Method::PATCH, "/api/auth/me", &user.access)
            .json(&json!({"first_name": good}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{good}");
        assert_eq!(res.json::<Value>().await.unwrap()["first_name"], good);
    }
}

/// Issue 15, point 3: one account per address, whichever way it is written.
async fn lookalike_and_unusable_addresses_cannot_register_beside_the_real_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let register =
        |email: &str, name: &str| json!({"email": email, "password": PASSWORD, "first_name": name});
    let res = app
        .post_json("/api/auth/register", &register("bob@example.test", "Bob"))
        .await;
    assert_eq!(res.status(), 201);
    for lookalike in [
        "bo\u{200b}b@example.test",
        "bo\u{ad}b@example.test",
        "bo\u{2060}b@example.test",
        "b\u{43e}b@example.test",
        "\u{ff42}ob@example.test",
        "\"bob\"@example.test",
        "bob@ex\u{e4}mple.test",
        "BOB@EXAMPLE.TEST ",
    ] {
        let res = app
            .post_json("/api/auth/register", &register(lookalike, "Bob"))
            .await;
        let body = assert_problem(res, 422).await;
        assert_eq!(body["errors"][0]["field"], "email", "{lookalike:?}: {body}");
    }
    // Another case is the same address.
    let res = app
        .post_json("/api/auth/register", &register("Bob@Example.Test", "Bob"))
        .await;
    assert_problem(res, 409).await;
    // An internationalised domain registers in its ASCII (xn--) form, once.
    let idn = register("bob@xn--exmple-cua.test", "Bob");
    assert_eq!(
        app.post_json("/api/auth/register", &idn).await.status(),
        201
    );
    assert_problem(app.post_json("/api/auth/register", &idn).await, 409).await;
    for name in [
        "Bo\u{200d}b",
        "Bo\u{200c}b",
        "Bo\u{2060}b",
        "Bo\u{200e}b",
        "Bo\u{61c}b",
        "Bo\u{ad}b",
        "Bob\u{2028}",
        "Bob\u{e0062}",
    ] {
        let res = app
            .post_json(
                "/api/auth/register",
                &register(&unique_email("names"), name),
            )
            .await;
        let body = assert_problem(res, 422).await;
        assert_eq!(body["errors"][0]["field"], "first_name", "{name:?}: {body}");
    }
    for name in ["Zoë", "Ngũgĩ", "Łukasz", "Ελένη"] {
        let res = app
            .post_json(
                "/api/auth/register",
                &register(&unique_email("names"), name),
            )
            .await;
        assert_eq!(res.status(), 201, "{name}");
    }
}

async fn a_profile_field_of_another_role_is_a_403_on_patch_me(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let customer = register_customer(&app).await;
    let admin = make_admin(&app).await;
    for (token, field) in [
        (&customer.access, json!({"skills": ["rust"]})),
        (&admin.access, json!({"company_name": "Acme"})),
    ] {
        let res = authed(&app, Method::PATCH, "/api/auth/me", token)
            .json(&json!({"first_name": "Changed", "profile": field}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403).await;
        // Nothing changed, not even the name sent beside the field.
        let me: Value = authed(&app, Method::GET, "/api/auth/me", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_ne!(me["first_name"], "Changed");
    }
    let developer = register_developer(&app).await;
    let res = authed(&app, Method::PATCH, "/api/auth/me", &developer.access)
        .json(&json!({"profile": {"skills": ["rust"], "github_url": "https://github.com/x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn a_name_that_is_no_profile_field_is_refused_even_when_its_value_is_null(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let developer = register_developer(&app).await;
    for body in [
        json!({"": null}),
        json!({"nickname": null}),
        json!({"phone": null}),
    ] {
        let res = authed(&app, Method::PATCH, "/api/developer/me", &developer.access)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(res, 422).await;
    }
    let res = authed(&app, Method::PATCH, "/api/developer/me", &developer.access)
        .json(&json!({"skills": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn the_v2_registration_checks_every_field_it_was_given(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let base = |extra: Value| {
        let mut body = json!({"email": unique_email("v2"), "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for extra in [
        // An invalid full_name beside a first_name that wins.
        json!({"first_name": "Thandi", "full_name": "Bad\u{0}Name"}),
        // A full name longer than a name may be, though each half would fit.
        json!({"full_name": format!("{} {}", "a".repeat(60), "b".repeat(60))}),
        // An invalid role beside a user_role that wins.
        json!({"first_name": "Thandi", "user_role": "developer", "role": "admin"}),
        // The company twice.
        json!({"first_name": "Thandi", "company_name": "Acme", "profile": {"company_name": "Other"}}),
    ] {
        let res = app
            .post_json("/api/auth/v2/register", &base(extra.clone()))
            .await;
        assert_problem(res, 422).await;
    }
    let res = app
        .post_json(
            "/api/auth/v2/register",
            &base(json!({"full_name": "Thandi Mokoena", "user_role": "developer", "company_name": "Acme"})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["role"], "developer");
    assert_eq!(body["user"]["last_name"], "Mokoena");
    assert_eq!(body["user"]["profile"]["company_name"], "Acme");
}

async fn every_guarded_operation_documents_its_edge_answers_and_no_catch_all(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let exempt = [
        "/health",
        "/alive",
        "/ready",
        "/api/health",
        "/version.json",
    ];
    let webhooks = ["/api/payments/payfast/itn", "/api/payments/stripe/webhook"];
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                !responses.contains_key("default"),
                "{method} {path}: every status is listed, none caught by `default`"
            );
            if op["requestBody"].is_object() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
            if exempt.contains(&path.as_str()) {
                assert!(
                    !responses.contains_key("429"),
                    "{method} {path} is never limited"
                );
                continue;
            }
            for status in ["403", "429", "503"] {
                assert!(responses.contains_key(status), "{method} {path} {status}");
            }
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path}: a 429 says when to retry"
            );
            if webhooks.contains(&path.as_str()) {
                // Not rate limited (a provider retries in bursts); the in-flight cap still is.
                assert!(
                    !responses["200"]["headers"]["RateLimit-Policy"].is_object(),
                    "{method} {path} has no rate limit"
                );
                continue;
            }
            for (status, response) in responses {
                assert!(
                    response["headers"]["RateLimit-Policy"].is_object(),
                    "{method} {path} {status} documents RateLimit-Policy"
                );
            }
        }
    }
}
