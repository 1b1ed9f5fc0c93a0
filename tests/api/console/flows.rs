//! The operator's flow: find, start (with and without pull-back), pause,
//! bulk pause, and live updates.

use super::*;

/// Sets the dialog's pull-back time to `hours_ago` hours before now, typed
/// in the browser's time zone as a person would; returns the instant in
/// RFC 3339 (UTC) as the browser computed it.
async fn choose_pull_back(browser: &Browser, hours_ago: f64) -> String {
    browser.click("#pull-back-yes").await;
    let utc = browser
        .js(
            "const when = new Date(Date.now() - arguments[0] * 3600e3);
             when.setMilliseconds(0);
             const pad = (n) => String(n).padStart(2, '0');
             const local = when.getFullYear() + '-' + pad(when.getMonth() + 1) + '-' + pad(when.getDate())
               + 'T' + pad(when.getHours()) + ':' + pad(when.getMinutes()) + ':' + pad(when.getSeconds());
             const input = document.getElementById('pull-back-local');
             input.value = local;
             input.dispatchEvent(new Event('input', { bubbles: true }));
             return when.toISOString();",
            vec![hours_ago.into()],
        )
        .await;
    utc.as_str().unwrap().to_owned()
}

async fn dialog_open(browser: &Browser) -> bool {
    browser
        .js("return document.getElementById('dialog').open;", Vec::new())
        .await
        == serde_json::Value::Bool(true)
}

#[tokio::test]
async fn search_by_ip_prefix_and_the_region_filter_narrow_the_table_and_the_url_keeps_them() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/")).await;
    browser.find("#row-orders-eu").await;

    let search = browser.find("#q").await;
    search.send_keys("10.2.1.").await.unwrap();
    search
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    browser
        .until(
            "only the ap-1 connectors",
            "const ids = [...document.querySelectorAll('#connectors tbody tr')].map(r => r.dataset.id).sort();
             return ids.join(',') === 'payments-ap,users-ap';",
        )
        .await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.query(), Some("q=10.2.1."));

    // Several regions: a selector, all by default; choosing one reloads
    // the table with it, and a reload of the URL shows the same.
    browser.goto(&app.url("/")).await;
    let selected = browser
        .js(
            "return document.getElementById('region').value;",
            Vec::new(),
        )
        .await;
    assert_eq!(selected, "");
    browser
        .js(
            "const s = document.getElementById('region'); s.value = 'us-1';
             s.dispatchEvent(new Event('change', { bubbles: true })); return true;",
            Vec::new(),
        )
        .await;
    browser
        .until(
            "the us-1 connectors only",
            "return location.search.includes('region=us-1') &&
               [...document.querySelectorAll('#connectors tbody td[data-label=Region]')]
                 .every(td => td.textContent === 'us-1');",
        )
        .await;
    let shown = browser
        .js(
            "return document.querySelectorAll('#connectors tbody tr').length;",
            Vec::new(),
        )
        .await;
    assert_eq!(
        shown, 4,
        "orders-us, payments-audit, inventory-us, users-migration"
    );
    browser.client.refresh().await.unwrap();
    let region = browser
        .js(
            "return document.getElementById('region').value;",
            Vec::new(),
        )
        .await;
    assert_eq!(region, "us-1");
    browser.screenshot("console-connectors.png").await;
}

#[tokio::test]
async fn the_server_field_takes_a_network_and_says_what_is_wrong_with_anything_else() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    // The eu-1 agents (10.0.1.7 and .8) run the four started eu-1
    // connectors; the network holds exactly those.
    let on_eu1 = eventually(UI_WAIT, || async {
        let page = app
            .client
            .clone()
            .list_connectors(v1::ListConnectorsRequest {
                server_ip: "10.0.1.0/24".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut ids: Vec<String> = page.connectors.into_iter().map(|c| c.id).collect();
        ids.sort();
        (ids == ["billing-eu", "orders-eu", "payments-eu", "users-eu"]).then_some(ids)
    })
    .await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/")).await;
    let server = browser.find("#server").await;
    server.send_keys("10.0.1.0/24").await.unwrap();
    server
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    browser
        .until(
            "the rows of the eu-1 servers",
            &format!(
                "return location.search.includes('server=10.0.1.0%2F24') &&
                   [...document.querySelectorAll('#connectors tbody tr')].map(r => r.dataset.id)
                     .sort().join(',') === '{}';",
                on_eu1.join(",")
            ),
        )
        .await;
    // Not an address: the API's refusal says what to write instead.
    browser.goto(&app.url("/?server=10.0.1")).await;
    let failure = browser.find(".failure").await.text().await.unwrap();
    assert!(failure.contains("10.0.1.0/24"), "{failure}");
}

#[tokio::test]
async fn start_without_pull_back_shows_running_without_a_reload() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    app.pause_via_api("orders-eu").await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=orders")).await;
    browser.until_row("orders-eu", "STOPPED").await;
    browser.until_live().await;
    browser.mark().await;

    browser
        .click("#row-orders-eu a[href='/connectors/orders-eu/start']")
        .await;
    browser.find("#dialog form[data-dialog-form]").await;
    let no = browser.find("#pull-back-no").await;
    assert_eq!(no.prop("checked").await.unwrap().as_deref(), Some("true"));
    let region = browser
        .js(
            "return document.getElementById('start-region').selectedOptions[0].textContent;",
            vec![],
        )
        .await;
    assert!(
        region
            .as_str()
            .unwrap()
            .contains("eu-1 (the destination's region)"),
        "{region}"
    );
    browser.click("#dialog button.primary").await;

    browser.until_row("orders-eu", "RUNNING").await;
    assert!(browser.still_marked().await, "the page was reloaded");
    assert!(!dialog_open(&browser).await);
    app.wait_for_state("orders-eu", v1::ConnectorState::Running)
        .await;
    let commands = app.commands("orders-eu").await;
    assert_eq!(commands[0].kind, v1::CommandKind::Start as i32);
    assert!(commands[0].pull_back_time.is_none());
}

#[tokio::test]
async fn pull_back_out_of_range_shows_the_error_in_the_dialog_and_changes_nothing_then_in_range_runs()
 {
    let app = ConsoleApp::start(Backend::Postgres).await;
    app.pause_via_api("payments-eu").await;
    let before = app.commands("payments-eu").await.len();
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=payments-eu")).await;
    browser.until_row("payments-eu", "STOPPED").await;
    browser.until_live().await;
    browser.mark().await;
    browser
        .click("#row-payments-eu a[href='/connectors/payments-eu/start']")
        .await;
    browser.find("#dialog #store-range").await;
    let hint = browser.find("#store-range").await.text().await.unwrap();
    assert!(hint.starts_with("The store holds data from"), "{hint}");

    // Two days ago: the demo agents' stores keep one.
    choose_pull_back(&browser, 48.0).await;
    let shown_utc = browser
        .find("#pull-back-utc-text")
        .await
        .text()
        .await
        .unwrap();
    assert!(shown_utc.ends_with("UTC"), "{shown_utc}");
    browser.click("#dialog button.primary").await;
    let failure = browser
        .find("#dialog .failure[data-reason='PULL_BACK_OUT_OF_RANGE']")
        .await;
    let text = failure.text().await.unwrap();
    assert!(text.contains("PULL_BACK_OUT_OF_RANGE"), "{text}");
    assert!(dialog_open(&browser).await, "the dialog stays open");
    let connector = app.get("payments-eu").await;
    assert_eq!(connector.state, v1::ConnectorState::Stopped as i32);
    assert_eq!(app.commands("payments-eu").await.len(), before);
    browser.screenshot("console-start-dialog.png").await;

    // One hour ago is held: it starts, pulled back to exactly that time.
    let chosen = choose_pull_back(&browser, 1.0).await;
    browser.click("#dialog button.primary").await;
    browser.until_row("payments-eu", "RUNNING").await;
    assert!(browser.still_marked().await, "the page was reloaded");
    let commands = app.commands("payments-eu").await;
    assert_eq!(commands.len(), before + 1);
    let pulled = commands[0].pull_back_time.expect("a pull-back time");
    let chosen = chrono::DateTime::parse_from_rfc3339(&chosen).unwrap();
    assert_eq!(pulled.seconds, chosen.timestamp());
}

#[tokio::test]
async fn the_start_dialog_offers_the_explicit_skip_when_the_store_lost_the_checkpoint() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    // A stopped connector whose checkpoint its store no longer holds (in a
    // region without agents, so that nothing reports over it).
    let mut lost = crate::helpers::connector("lost-eu", "lost orders");
    for endpoint in [&mut lost.source, &mut lost.destination] {
        endpoint.as_mut().unwrap().region = "eu-9".to_owned();
    }
    app.client
        .clone()
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(lost),
        })
        .await
        .unwrap();
    app.db
        .as_ref()
        .unwrap()
        .client()
        .await
        .execute(
            "UPDATE connectors SET store_earliest_time = now() - interval '1 hour',
                 store_latest_time = now(), checkpoint_time = now() - interval '3 hours'
             WHERE id = 'lost-eu'",
            &[],
        )
        .await
        .unwrap();
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=lost-eu")).await;
    browser.until_row("lost-eu", "STOPPED").await;
    browser.until_live().await;
    browser
        .click("#row-lost-eu a[href='/connectors/lost-eu/start']")
        .await;
    let warning = browser
        .find("#dialog .skip-choice")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        warning.contains("no longer holds this connector's checkpoint"),
        "{warning}"
    );
    // Started as it is, it is refused; the dialog says why and stays.
    browser.click("#dialog button.primary").await;
    let failure = browser
        .find("#dialog .failure[data-reason='CHECKPOINT_OUT_OF_RANGE']")
        .await
        .text()
        .await
        .unwrap();
    assert!(failure.contains("skip"), "{failure}");
    // In the console's words: its labels, times to the second in UTC.
    assert!(
        failure.contains("Skip to the earliest data") && !failure.contains("skip_to_earliest"),
        "{failure}"
    );
    assert!(
        failure.contains(" UTC") && !failure.contains("+00:00"),
        "{failure}"
    );
    assert!(dialog_open(&browser).await, "the dialog stays open");
    assert!(app.commands("lost-eu").await.is_empty());
    // Ticking the skip starts it, and the command carries the choice.
    browser.click("#skip-to-earliest").await;
    browser.click("#dialog button.primary").await;
    browser.until_row("lost-eu", "STARTING").await;
    let commands = app.commands("lost-eu").await;
    assert_eq!(commands.len(), 1);
    assert!(commands[0].skip_to_earliest);
}

#[tokio::test]
async fn a_connector_whose_agent_is_gone_is_marked_stopped_from_its_row_and_can_start_again() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let mut gone = crate::helpers::connector("gone-eu", "gone orders");
    for endpoint in [&mut gone.source, &mut gone.destination] {
        endpoint.as_mut().unwrap().region = "eu-9".to_owned();
    }
    app.client
        .clone()
        .create_connector(v1::CreateConnectorRequest {
            connector: Some(gone),
        })
        .await
        .unwrap();
    // An agent of its own runs it, then dies.
    let channel = channel_to(&app.grpc.to_string()).await;
    let agent = TestAgent::connect_to(channel, hello("lost-1", "eu-9", "10.9.0.1")).await;
    let mut agent = agent;
    app.client
        .clone()
        .start_connector(v1::StartConnectorRequest {
            id: "gone-eu".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let command = agent.next_command().await;
    agent.succeed(&command, v1::ConnectorState::Running).await;
    app.wait_for_state("gone-eu", v1::ConnectorState::Running)
        .await;
    drop(agent);
    app.wait_for_state("gone-eu", v1::ConnectorState::Unknown)
        .await;

    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=gone-eu")).await;
    browser.until_row("gone-eu", "UNKNOWN").await;
    browser.until_live().await;
    browser
        .click("#row-gone-eu a[href='/connectors/gone-eu/mark-stopped']")
        .await;
    browser
        .find("#dialog #mark-reason")
        .await
        .send_keys("INC-11 host of lost-1 gone")
        .await
        .unwrap();
    browser.click("#dialog button.primary").await;
    browser.until_row("gone-eu", "STOPPED").await;
    browser
        .find("#row-gone-eu a[href='/connectors/gone-eu/start']")
        .await;
    let connector = app.get("gone-eu").await;
    assert_eq!(connector.state, v1::ConnectorState::Stopped as i32);
    assert!(
        connector.status_message.contains("INC-11"),
        "{}",
        connector.status_message
    );
}

#[tokio::test]
async fn a_full_migration_connector_offers_no_pull_back_and_says_why() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser
        .goto(&app.url("/connectors/orders-archive/start"))
        .await;
    let yes = browser.find("#pull-back-yes").await;
    assert_eq!(yes.attr("disabled").await.unwrap().as_deref(), Some("true"));
    let reason = browser
        .find("#pull-back-reason")
        .await
        .text()
        .await
        .unwrap();
    assert!(reason.contains("only for incremental-sync"), "{reason}");
    assert!(reason.contains("full-migration"), "{reason}");
}

#[tokio::test]
async fn pause_with_ok_stops_the_connector_with_the_reason_given() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/")).await;
    browser.until_row("users-eu", "RUNNING").await;
    browser.until_live().await;
    browser.mark().await;
    browser
        .click("#row-users-eu a[href='/connectors/users-eu/pause']")
        .await;
    let reason = browser.find("#pause-reason").await;
    reason.send_keys("INC-4711 latency").await.unwrap();
    browser.click("#dialog button.primary").await;
    browser.until_row("users-eu", "STOPPED").await;
    assert!(browser.still_marked().await);
    app.wait_for_state("users-eu", v1::ConnectorState::Stopped)
        .await;
    let commands = app.commands("users-eu").await;
    assert_eq!(commands[0].kind, v1::CommandKind::Pause as i32);
    assert_eq!(commands[0].reason, "INC-4711 latency");
}

#[tokio::test]
async fn the_pause_flow_works_by_keyboard_alone() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=inventory-us")).await;
    browser.until_row("inventory-us", "RUNNING").await;
    use fantoccini::key::Key;
    // Focus on the row's Pause link (as Tab would bring it), then Enter.
    browser
        .js(
            "document.querySelector(\"#row-inventory-us a[href$='/pause']\").focus(); return true;",
            vec![],
        )
        .await;
    let link = browser.client.active_element().await.unwrap();
    assert_eq!(link.text().await.unwrap(), "Pause");
    link.send_keys(&Key::Enter.to_string()).await.unwrap();
    // The dialog takes focus (its reason field); Tab reaches OK.
    browser
        .until(
            "focus in the dialog's reason field",
            "return document.activeElement && document.activeElement.id === 'pause-reason';",
        )
        .await;
    let focused = browser.client.active_element().await.unwrap();
    focused.send_keys("keyboard").await.unwrap();
    focused.send_keys(&Key::Tab.to_string()).await.unwrap();
    let ok = browser.client.active_element().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "OK");
    ok.send_keys(&Key::Enter.to_string()).await.unwrap();
    browser.until_row("inventory-us", "STOPPED").await;
    // Focus returns to where the dialog was opened from.
    let commands = app.commands("inventory-us").await;
    assert_eq!(commands[0].reason, "keyboard");
}

#[tokio::test]
async fn bulk_pause_shows_the_dry_run_refuses_past_the_guard_and_reports_each_connector() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=payments")).await;
    browser.until_row("payments-eu", "RUNNING").await;
    browser.until_row("payments-ap", "RUNNING").await;
    browser.until_live().await;
    for id in ["payments-eu", "payments-ap"] {
        browser.click(&format!("#row-{id} input[name=ids]")).await;
    }
    let count = browser.find("#selected-count").await.text().await.unwrap();
    assert_eq!(count, "2");
    browser
        .click("#bulk button[name=action][value=pause]")
        .await;
    let dry_run = browser
        .find("#dialog [data-dry-run]")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        dry_run.contains("2 chosen: 2 would get a command"),
        "{dry_run}"
    );

    // The guard: at most one may change; two are chosen.
    browser
        .js(
            "document.getElementById('bulk-max').value = '1'; return true;",
            vec![],
        )
        .await;
    browser
        .click("#dialog button[name=step][value=review]")
        .await;
    browser
        .find("#dialog .failure[data-reason='TOO_MANY_CONNECTORS']")
        .await;
    for id in ["payments-eu", "payments-ap"] {
        assert_eq!(
            app.get(id).await.state,
            v1::ConnectorState::Running as i32,
            "nothing changed"
        );
    }

    browser
        .js(
            "document.getElementById('bulk-max').value = '2'; return true;",
            vec![],
        )
        .await;
    browser
        .click("#dialog button[name=step][value=review]")
        .await;
    browser.find("#dialog [data-dry-run]").await;
    browser
        .click("#dialog button[name=step][value=commit]")
        .await;
    let done = browser
        .find("#dialog [data-batch-done]")
        .await
        .text()
        .await
        .unwrap();
    assert!(done.contains("2 chosen: 2 got a command"), "{done}");
    let outcomes = browser
        .js(
            "return [...document.querySelectorAll('#dialog tr[data-outcome]')].map(r => r.dataset.outcome).join(',');",
            vec![],
        )
        .await;
    assert_eq!(outcomes, "CHANGED,CHANGED");
    browser.click("#dialog button[data-close]").await;
    browser.until_row("payments-eu", "STOPPED").await;
    browser.until_row("payments-ap", "STOPPED").await;
    app.wait_for_state("payments-ap", v1::ConnectorState::Stopped)
        .await;
}

#[tokio::test]
async fn the_bulk_guard_defaults_to_what_was_ticked_and_for_all_matching_to_one_hundred() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    let guard = async || {
        browser
            .js("return document.getElementById('bulk-max').value;", vec![])
            .await
    };
    browser.goto(&app.url("/?q=payments")).await;
    browser.until_row("payments-eu", "RUNNING").await;
    browser.click("#row-payments-eu input[name=ids]").await;
    browser
        .click("#bulk button[name=action][value=pause]")
        .await;
    browser.find("#dialog [data-dry-run]").await;
    assert_eq!(guard().await, "1");
    browser.click("#dialog button[data-close]").await;
    // Three match "payments": the guard is not that count (it would never
    // refuse), but the default every other client has.
    browser.goto(&app.url("/?q=payments")).await;
    browser.until_row("payments-eu", "RUNNING").await;
    browser.click("#all-matching").await;
    browser
        .click("#bulk button[name=action][value=pause]")
        .await;
    browser.find("#dialog [data-dry-run]").await;
    assert_eq!(guard().await, "100");
}

#[tokio::test]
async fn a_pause_by_another_client_shows_live_without_a_reload() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/?region=eu-1")).await;
    browser.until_row("orders-eu", "RUNNING").await;
    browser.until_live().await;
    browser.mark().await;
    app.pause_via_api("orders-eu").await;
    browser.until_row("orders-eu", "STOPPED").await;
    assert!(browser.still_marked().await, "the page was reloaded");
}

#[tokio::test]
async fn the_console_runs_the_same_flow_on_the_embedded_store() {
    let app = ConsoleApp::start(Backend::Embedded).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=10.1.1.")).await;
    browser.until_row("orders-us", "RUNNING").await;
    browser.until_live().await;
    browser.mark().await;
    browser
        .click("#row-orders-us a[href='/connectors/orders-us/pause']")
        .await;
    browser.click("#dialog button.primary").await;
    browser.until_row("orders-us", "STOPPED").await;
    browser
        .click("#row-orders-us a[href='/connectors/orders-us/start']")
        .await;
    choose_pull_back(&browser, 2.0).await;
    browser.click("#dialog button.primary").await;
    browser.until_row("orders-us", "RUNNING").await;
    assert!(browser.still_marked().await);
    let commands = app.commands("orders-us").await;
    assert!(commands[0].pull_back_time.is_some());
}

#[tokio::test]
async fn a_database_outage_shows_a_banner_and_the_page_recovers_by_itself() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/")).await;
    browser.until_live().await;
    let db = app.db.clone().unwrap();
    db.refuse_connections().await;
    browser
        .until(
            "the outage banner",
            "const b = document.getElementById('banner'); return !b.hidden && /database/.test(b.textContent);",
        )
        .await;
    // A page loaded meanwhile says so too, and retries.
    browser.goto(&app.url("/")).await;
    browser
        .find(".failure[data-reason='STORE_UNAVAILABLE']")
        .await;
    db.allow_connections().await;
    browser
        .until(
            "the table back, live",
            "const l = document.getElementById('live'); return !!document.getElementById('row-orders-eu') && !!l && !l.hidden;",
        )
        .await;
}

#[tokio::test]
async fn on_a_phone_width_the_rows_become_cards_and_pause_still_works() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.goto(&app.url("/?q=payments-eu")).await;
    browser.until_row("payments-eu", "RUNNING").await;
    browser.until_live().await;
    // Nothing wider than the screen: no sideways scrolling on call.
    let widths = browser
        .js(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    let (page, screen) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
    assert!(screen < 760, "the phone layout applies at {screen}px");
    assert!(
        page <= screen,
        "the page is {page}px wide on a {screen}px screen"
    );
    // The header row is gone; every cell carries its column's label.
    let layout = browser
        .js(
            "const head = getComputedStyle(document.querySelector('#connectors thead')).display;
             const row = document.getElementById('row-payments-eu');
             const state = row.querySelector('td[data-label=State]');
             return [head, getComputedStyle(row).display, !!state,
                     getComputedStyle(state, '::before').content];",
            vec![],
        )
        .await;
    assert_eq!(layout[0], "none", "{layout}");
    assert_eq!(layout[1], "block", "{layout}");
    assert_eq!(layout[3], "\"State\"", "{layout}");
    browser.screenshot("console-phone.png").await;
    // The flow itself: the Pause dialog fits the screen and OK pauses.
    browser.click("#row-payments-eu a[href$='/pause']").await;
    browser.find("#pause-reason").await;
    let dialog = browser
        .js(
            "const r = document.querySelector('#dialog').getBoundingClientRect();
             return [r.left, r.right, window.innerWidth];",
            vec![],
        )
        .await;
    let (left, right, screen) = (
        dialog[0].as_f64().unwrap(),
        dialog[1].as_f64().unwrap(),
        dialog[2].as_f64().unwrap(),
    );
    assert!(
        left >= 0.0 && right <= screen,
        "the dialog fits the screen: {dialog}"
    );
    browser.click("#dialog button.primary").await;
    browser.until_row("payments-eu", "STOPPED").await;
    assert_eq!(
        app.get("payments-eu").await.state,
        v1::ConnectorState::Stopped as i32
    );
    // The Audit tab's table is wider than a phone: it scrolls inside the
    // page, and the page says so.
    browser.goto(&app.url("/audit")).await;
    let audit = browser
        .js(
            "const hint = document.querySelector('.scroll-hint');
             return [document.documentElement.scrollWidth <= window.innerWidth,
                     !!hint && getComputedStyle(hint).display !== 'none'];",
            vec![],
        )
        .await;
    assert_eq!(audit, serde_json::json!([true, true]), "{audit}");
}

#[tokio::test]
async fn what_agents_say_is_shown_with_control_and_bidi_characters_visible() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    // A row written before such text was escaped at the door.
    app.db
        .as_ref()
        .unwrap()
        .client()
        .await
        .execute(
            "UPDATE connectors SET status_message = E'disk full \\u202Etxt.exe\\u0007'
             WHERE id = 'orders-archive'",
            &[],
        )
        .await
        .unwrap();
    let browser = Browser::open().await;
    browser.goto(&app.url("/?q=orders-archive")).await;
    let cell = browser
        .find("#row-orders-archive .state-cell .status")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !cell.contains('\u{202E}') && !cell.contains('\u{7}'),
        "{cell:?}"
    );
    assert!(cell.contains("\\u{202e}txt.exe\\u{7}"), "{cell}");
}

#[tokio::test]
async fn a_dialog_opened_as_a_page_posts_as_a_page_and_a_dry_run_says_would_change() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    // The Pause dialog's own URL, opened directly (a link pasted, say).
    browser.goto(&app.url("/connectors/users-eu/pause")).await;
    browser
        .find("#pause-reason")
        .await
        .send_keys("INC-12")
        .await
        .unwrap();
    browser.click("button.primary").await;
    browser
        .until(
            "the connector's page, without a dialog over it",
            "return location.pathname === '/connectors/users-eu' &&
               !document.querySelector('dialog[open]');",
        )
        .await;
    app.wait_for_state("users-eu", v1::ConnectorState::Stopped)
        .await;

    // A bulk dry run says what would change, not what changed; ticking
    // "all matching" says so in the count.
    browser.goto(&app.url("/?q=payments")).await;
    browser.until_row("payments-eu", "RUNNING").await;
    browser.click("#all-matching").await;
    let count = browser.find("#selected-count").await.text().await.unwrap();
    assert_eq!(count, "all 3 matching");
    browser
        .click("#bulk button[name=action][value=pause]")
        .await;
    browser.find("#dialog [data-dry-run]").await;
    let labels = browser
        .js(
            "return [...document.querySelectorAll('#dialog .outcome')].map(o => o.textContent).join(',');",
            vec![],
        )
        .await;
    assert_eq!(labels, "WOULD CHANGE,WOULD CHANGE,WOULD CHANGE");

    // Every page names its icon, which is there (no 404 in the console).
    let icon = browser
        .js(
            "return fetch('/favicon.ico').then(r => r.status + ' ' + r.headers.get('content-type'));",
            vec![],
        )
        .await;
    assert_eq!(icon, "200 image/svg+xml");
}

#[tokio::test]
async fn an_operator_changes_a_restart_policy_on_the_connectors_page() {
    let app = ConsoleApp::start(Backend::Postgres).await;
    let browser = Browser::open().await;
    browser.goto(&app.url("/connectors/orders-eu")).await;
    let shown = browser.find("#restart-policy").await.text().await.unwrap();
    assert!(shown.contains("ON_FAILURE, unlimited"), "{shown}");
    browser
        .click("#restart-policy a[href='/connectors/orders-eu/restart-policy']")
        .await;
    let max = browser.find("#dialog #max-restarts").await;
    max.clear().await.unwrap();
    max.send_keys("3").await.unwrap();
    let first = browser.find("#dialog #initial-backoff").await;
    first.clear().await.unwrap();
    first.send_keys("45s").await.unwrap();
    browser.click("#dialog button.primary").await;
    eventually(UI_WAIT, || async {
        let policy = app.get("orders-eu").await.restart_policy.unwrap();
        (policy.max_restarts == 3).then_some(policy)
    })
    .await;
    let policy = app.get("orders-eu").await.restart_policy.unwrap();
    assert_eq!(policy.initial_backoff.unwrap().seconds, 45);
    // A duration the console cannot read is said so, in the dialog.
    browser
        .goto(&app.url("/connectors/orders-eu/restart-policy"))
        .await;
    let first = browser.find("#initial-backoff").await;
    first.clear().await.unwrap();
    first.send_keys("soon").await.unwrap();
    browser.click("button.primary").await;
    let failure = browser.find(".failure").await.text().await.unwrap();
    assert!(failure.contains("'soon' is not a duration"), "{failure}");
}
