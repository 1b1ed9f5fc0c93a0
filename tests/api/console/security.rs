//! Sign-in with the auth file, what a viewer sees, and forged requests.

use super::*;
use connector_control::auth::token_sha256;
use connector_control::proto::v1::audit_service_client::AuditServiceClient;

const VIEWER: &str = "console-viewer-token";
const OPERATOR: &str = "console-operator-token";
const ADMIN: &str = "console-admin-token";

fn auth(dir: &TempDir) -> Authenticator {
    let principal = |name: &str, role: &str, token: &str| {
        format!(
            "[[principal]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n\n",
            token_sha256(token)
        )
    };
    let text = [
        principal("vera", "viewer", VIEWER),
        principal("otto", "operator", OPERATOR),
        principal("ada", "admin", ADMIN),
        agent_principals(),
    ]
    .concat();
    let path = dir.0.join("auth.toml");
    std::fs::write(&path, text).unwrap();
    Authenticator::from_file(&path).unwrap()
}

async fn secured() -> (ConsoleApp, TempDir) {
    let dir = TempDir::new();
    let app = ConsoleApp::start_secured(auth(&dir), ADMIN).await;
    (app, dir)
}

async fn audit_events(app: &ConsoleApp, principal: &str) -> Vec<v1::AuditEvent> {
    AuditServiceClient::new(channel_to(&app.grpc.to_string()).await)
        .list_audit_events(with_token(
            v1::ListAuditEventsRequest {
                principal: principal.to_owned(),
                page_size: 100,
                ..Default::default()
            },
            Some(ADMIN),
        ))
        .await
        .expect("ListAuditEvents")
        .into_inner()
        .events
}

#[tokio::test]
async fn the_console_asks_to_sign_in_and_a_viewer_sees_no_start_or_pause() {
    let (app, _dir) = secured().await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=orders")).await;
    browser.find("#token").await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/login");

    // A wrong token is refused with the API's reason.
    browser
        .find("#token")
        .await
        .send_keys("nope")
        .await
        .unwrap();
    browser.click("form button[type=submit]").await;
    let failure = browser.find(".failure").await.text().await.unwrap();
    assert!(failure.contains("unknown token"), "{failure}");

    browser.sign_in(VIEWER).await;
    // Back where the link pointed.
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.query(), Some("q=orders"));
    browser.find("#row-orders-eu").await;
    let controls = browser
        .js(
            "return document.querySelectorAll('a[data-dialog], #bulk, input[name=ids], td.actions').length;",
            vec![],
        )
        .await;
    assert_eq!(controls, 0, "a viewer sees no Start/Pause controls");
    let who = browser
        .find("header.top [data-principal]")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(who, "vera · viewer");

    // The session cookie is HttpOnly and SameSite=Strict: the page's
    // script cannot read it.
    let visible = browser.js("return document.cookie;", vec![]).await;
    assert_eq!(visible, "");

    // Its Start dialog, reached by URL, says why it is not offered.
    browser.goto(&app.url("/connectors/orders-eu/start")).await;
    let refusal = browser
        .find(".failure[data-reason='PERMISSION_DENIED']")
        .await
        .text()
        .await
        .unwrap();
    assert!(refusal.contains("connectors.operate"), "{refusal}");
    assert_eq!(
        browser
            .js(
                "return document.querySelectorAll('form[action$=\"/start\"]').length;",
                vec![]
            )
            .await,
        0
    );

    // Logging out ends the session.
    browser
        .click("header.top form[action='/logout'] button")
        .await;
    browser.find("#token").await;
    browser.goto(&app.url("/")).await;
    browser.find("#token").await;
}

#[tokio::test]
async fn a_forged_request_from_a_viewer_is_refused_and_audited_with_its_name() {
    let (app, _dir) = secured().await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(VIEWER).await;
    // The viewer crafts the request the page would send, with the page's
    // own CSRF token: the API refuses it.
    let answer = browser
        .js(
            "const csrf = document.querySelector('meta[name=csrf-token]').content;
             const done = arguments[arguments.length - 1];
             return fetch('/connectors/orders-eu/pause', {
               method: 'POST',
               headers: { 'X-CSRF-Token': csrf, 'X-Console-Fragment': '1',
                          'Content-Type': 'application/x-www-form-urlencoded' },
               body: 'reason=forged&request_id=forged-1',
             }).then(async r => r.status + ' ' + await r.text());",
            vec![],
        )
        .await;
    let answer = answer.as_str().unwrap();
    assert!(answer.starts_with("403 "), "{answer}");
    assert!(answer.contains("PERMISSION_DENIED"), "{answer}");
    assert_eq!(
        app.get("orders-eu").await.state,
        v1::ConnectorState::Running as i32
    );
    let events = eventually(UI_WAIT, || async {
        let events = audit_events(&app, "vera").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0].action, "PAUSE_CONNECTOR");
    assert_eq!(events[0].outcome, "PERMISSION_DENIED");
    assert_eq!(events[0].connector_id, "orders-eu");
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_audited() {
    let (app, _dir) = secured().await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OPERATOR).await;
    let status = browser
        .js(
            "return fetch('/connectors/orders-eu/pause', {
               method: 'POST',
               headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
               body: 'reason=no-token',
             }).then(r => r.status);",
            vec![],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        app.get("orders-eu").await.state,
        v1::ConnectorState::Running as i32
    );
    let events = eventually(UI_WAIT, || async {
        let events = audit_events(&app, "otto").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0].reason, "CSRF_CHECK_FAILED");
    assert_eq!(events[0].outcome, "PERMISSION_DENIED");
}

#[tokio::test]
async fn a_cross_site_post_from_another_page_changes_nothing() {
    let (app, _dir) = secured().await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/login")).await;
    browser.sign_in(OPERATOR).await;
    // An attacker's page (another origin) posts the Pause form to the
    // console in the signed-in operator's browser.
    let attack = format!(
        "data:text/html,<form method=post action='{}/connectors/orders-eu/pause'>\
         <input name=reason value=forged></form><script>document.forms[0].submit()</script>",
        app.base
    );
    browser.goto(&attack).await;
    browser
        .until(
            "the console's refusal",
            "return /SESSION_REQUIRED|CSRF_CHECK_FAILED/.test(document.body.innerText);",
        )
        .await;
    assert_eq!(
        app.get("orders-eu").await.state,
        v1::ConnectorState::Running as i32
    );
    let commands = app.commands("orders-eu").await;
    assert!(commands.iter().all(|c| c.reason != "forged"));
}

#[tokio::test]
async fn an_operator_signed_in_can_pause_and_the_audit_tab_names_it() {
    let (app, _dir) = secured().await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/login?next=/%3Fq%3Dusers-ap")).await;
    browser.sign_in(OPERATOR).await;
    browser.until_row("users-ap", "RUNNING").await;
    browser
        .click("#row-users-ap a[href='/connectors/users-ap/pause']")
        .await;
    browser.click("#dialog button.primary").await;
    browser.until_row("users-ap", "STOPPED").await;
    browser.goto(&app.url("/audit?principal=otto")).await;
    let row = browser.find("#audit tbody tr").await.text().await.unwrap();
    assert!(row.contains("PAUSE_CONNECTOR"), "{row}");
    assert!(row.contains("users-ap"), "{row}");
    browser.goto(&app.url("/agents")).await;
    let agents = browser.find("main").await.text().await.unwrap();
    assert!(agents.contains("Region eu-1"), "{agents}");
}

/// A raw POST of a form to the console, from `source` (a local address):
/// the status code and the `Location` and `Retry-After` headers.
async fn post_form(
    app: &ConsoleApp,
    source: &str,
    path: &str,
    form: &str,
) -> (u16, Option<String>, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        answer
            .lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
    };
    (status, header("location"), header("retry-after"))
}

#[tokio::test]
async fn a_sign_in_never_sends_the_browser_to_another_site() {
    let (app, _dir) = secured().await;
    for next in [
        "%2F%09%2Fevil.example",
        "%2F%0A%2Fevil.example",
        "%2F%0D%2Fevil.example",
        "%2F%0B%2Fevil.example",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "https%3A%2F%2Fevil.example",
    ] {
        let (status, location, _) = post_form(
            &app,
            "127.0.0.1",
            "/login",
            &format!("token={VIEWER}&next={next}"),
        )
        .await;
        assert_eq!(status, 303, "{next}: signed in and sent on, never a 500");
        assert_eq!(location.as_deref(), Some("/"), "{next}");
    }
    // A path of the console is kept.
    let (_, location, _) = post_form(
        &app,
        "127.0.0.1",
        "/login",
        &format!("token={VIEWER}&next=%2F%3Fq%3Dusers-ap"),
    )
    .await;
    assert_eq!(location.as_deref(), Some("/?q=users-ap"));
}

#[tokio::test]
async fn an_address_trying_tokens_is_throttled_before_its_tokens_are_checked() {
    let (app, _dir) = secured().await;
    let mut throttled = 0;
    let mut retry_after = None;
    let started = std::time::Instant::now();
    for i in 0..1_000 {
        let (status, _, retry) =
            post_form(&app, "127.0.0.3", "/login", &format!("token=guess-{i}")).await;
        match status {
            401 => {}
            429 => {
                throttled += 1;
                retry_after = retry;
            }
            other => panic!("attempt {i}: {other}"),
        }
    }
    // The bucket lets 20 tries through at once and one more every 3 s:
    // however slow the machine, no more than that reach the token check.
    let refills = started.elapsed().as_secs() / 3 + 1;
    let tried = 1_000 - throttled;
    assert!(
        tried <= 20 + refills,
        "{tried} of 1,000 guesses were checked in {:?}; the throttle allows {}",
        started.elapsed(),
        20 + refills
    );
    assert!(retry_after.is_some_and(|seconds| seconds.parse::<u64>().unwrap() >= 1));
    // The right token from that address waits too; another address is
    // not held up.
    let (status, _, _) = post_form(&app, "127.0.0.3", "/login", &format!("token={VIEWER}")).await;
    assert_eq!(status, 429);
    let (status, _, _) = post_form(&app, "127.0.0.4", "/login", &format!("token={VIEWER}")).await;
    assert_eq!(status, 303);
}
