use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::TestDb;

/// Runs `eventflows ARGS` against the test database, with `stdin` piped in.
fn eventflows(db: &TestDb, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventflows"))
        .args(args)
        .env("EVENTFLOWS_DATABASE_URL", &db.url)
        .env("EVENTFLOWS_DATA_DIR", &db.dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn assert_fails_with(output: &Output, message: &str) {
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(output));
    assert!(
        stderr(output).contains(message),
        "expected {message:?} in stderr: {}",
        stderr(output)
    );
}

#[test]
fn users_are_created_from_a_password_on_standard_input_and_not_twice() {
    let db = TestDb::fresh();
    let ok = eventflows(
        &db,
        &["user", "add", "root-admin", "--admin", "--password-stdin"],
        "long-enough-pw\n",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("Created admin 'root-admin'"));
    let again = eventflows(
        &db,
        &["user", "add", "root-admin", "--password-stdin"],
        "long-enough-pw\n",
    );
    assert_fails_with(&again, "The user 'root-admin' already exists.");
    let empty = eventflows(&db, &["user", "add", "eve", "--password-stdin"], "");
    assert_fails_with(&empty, "no password on standard input");
    let short = eventflows(&db, &["user", "add", "eve", "--password-stdin"], "short\n");
    assert_fails_with(&short, "at least 8 characters");
    let odd = eventflows(
        &db,
        &["user", "add", "e ve", "--password-stdin"],
        "long-enough-pw\n",
    );
    assert_fails_with(&odd, "only letters, digits");
    let no_flag = eventflows(&db, &["user", "add", "eve"], "long-enough-pw\n");
    assert!(!no_flag.status.success());
    assert!(stderr(&no_flag).contains("--password-stdin"));
}

#[test]
fn memberships_need_an_existing_organization_and_user() {
    let db = TestDb::fresh();
    assert_fails_with(
        &eventflows(&db, &["org", "add-member", "acme", "ana"], ""),
        "The organization 'acme' was not found.",
    );
    assert!(
        eventflows(&db, &["org", "add", "acme"], "")
            .status
            .success()
    );
    assert_fails_with(
        &eventflows(&db, &["org", "add", "acme"], ""),
        "The organization 'acme' already exists.",
    );
    assert_fails_with(
        &eventflows(&db, &["org", "add-member", "acme", "ana"], ""),
        "The user 'ana' was not found.",
    );
    assert!(
        eventflows(
            &db,
            &["user", "add", "ana", "--password-stdin"],
            "ana-password\n"
        )
        .status
        .success()
    );
    let added = eventflows(&db, &["org", "add-member", "acme", "ana"], "");
    assert!(
        stdout(&added).contains("'ana' is now a member of 'acme'"),
        "{}",
        stdout(&added)
    );
    let again = eventflows(&db, &["org", "add-member", "acme", "ana"], "");
    assert!(stdout(&again).contains("already a member"));
}

#[test]
fn algorithm_versions_are_validated() {
    let db = TestDb::fresh();
    let add = |args: &[&str]| {
        let mut all = vec!["algorithm", "add"];
        all.extend_from_slice(args);
        eventflows(&db, &all, "")
    };
    assert_fails_with(
        &add(&[
            "acme/echo",
            "--version",
            "1.0.0",
            "--runtime",
            "builtin:echo",
        ]),
        "The organization 'acme' was not found.",
    );
    assert!(
        eventflows(&db, &["org", "add", "acme"], "")
            .status
            .success()
    );
    assert!(
        add(&[
            "acme/echo",
            "--version",
            "1.0.0",
            "--runtime",
            "builtin:echo"
        ])
        .status
        .success()
    );
    // A model server only an admin allowed may be named.
    let model = [
        "acme/echo",
        "--version",
        "1.1.0",
        "--runtime",
        "http:http://127.0.0.1:9/predict",
    ];
    assert_fails_with(
        &add(&model),
        "The model host 127.0.0.1:9 is not allowed; an admin can allow it under Admin → Model hosts.",
    );
    let allowed = eventflows(&db, &["model-hosts", "allow", "127.0.0.1:9"], "");
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(stdout(&allowed).trim(), "Allowed 127.0.0.1:9.");
    assert_fails_with(
        &eventflows(&db, &["model-hosts", "allow", "127.0.0.1:9"], ""),
        "127.0.0.1:9 is allowed already.",
    );
    assert_fails_with(
        &eventflows(&db, &["model-hosts", "allow", "http://a@b/"], ""),
        "A URL prefix has no user name or password.",
    );
    let listed = eventflows(&db, &["model-hosts", "list"], "");
    assert!(
        stdout(&listed).starts_with("127.0.0.1:9\t(command line)\t"),
        "{}",
        stdout(&listed)
    );
    assert!(add(&model).status.success());
    // The command line's changes are in the audit log, as the command line.
    let recorded = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = db.url.clone();
        let pool = server::db::Db::open(&url).unwrap();
        pool.interact(|c| {
            use diesel::prelude::*;
            use server::db::schema::audit_events;
            audit_events::table
                .select((
                    audit_events::actor,
                    audit_events::kind,
                    audit_events::target,
                ))
                .order(audit_events::at_ms)
                .load::<(String, String, String)>(c)
        })
        .await
        .unwrap()
    });
    for (kind, target) in [
        ("organization-created", "acme"),
        ("version-added", "acme/echo 1.0.0"),
        ("model-host-allowed", "127.0.0.1:9"),
        ("version-added", "acme/echo 1.1.0"),
    ] {
        assert!(
            recorded.contains(&("(command line)".into(), kind.into(), target.into())),
            "{kind} {target}: {recorded:?}"
        );
    }
    assert_fails_with(
        &add(&[
            "acme/echo",
            "--version",
            "1.0.0",
            "--runtime",
            "builtin:echo",
        ]),
        "acme/echo already has a version 1.0.0.",
    );
    assert_fails_with(
        &add(&["acme/echo", "--version", "1.0", "--runtime", "builtin:echo"]),
        "'1.0' is not a version",
    );
    assert_fails_with(
        &add(&[
            "acme/echo",
            "--version",
            "2.0.0",
            "--runtime",
            "builtin:nope",
        ]),
        "There is no built-in algorithm 'nope'",
    );
    assert_fails_with(
        &add(&["acme/echo", "--version", "2.0.0", "--runtime", "python:x"]),
        "A runtime is builtin:ID, http:URL or http-batch:URL",
    );
    assert_fails_with(
        &add(&["echo", "--version", "2.0.0", "--runtime", "builtin:echo"]),
        "ORG/NAME",
    );
}

#[test]
fn the_demo_seeds_once_and_prints_the_logins() {
    let db = TestDb::fresh();
    let first = eventflows(&db, &["demo"], "");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("admin"));
    assert!(stdout(&first).contains("ana-password"));
    let second = eventflows(&db, &["demo"], "");
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stdout(&first), stdout(&second));
}

#[test]
fn every_command_has_help() {
    let db = TestDb::fresh();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "add", "--help"],
        vec!["org", "add", "--help"],
        vec!["org", "add-member", "--help"],
        vec!["algorithm", "add", "--help"],
        vec!["demo", "--help"],
    ] {
        let out = eventflows(&db, &args, "");
        assert!(out.status.success(), "{args:?}");
        assert!(
            stdout(&out).contains("Usage: eventflows"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn migrate_reports_and_a_database_that_cannot_be_opened_is_a_clear_error() {
    let db = TestDb::fresh();
    let out = eventflows(&db, &["migrate"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("up to date"));

    let broken = Command::new(env!("CARGO_BIN_EXE_eventflows"))
        .arg("migrate")
        .env("EVENTFLOWS_DATA_DIR", &db.dir)
        .env(
            "EVENTFLOWS_DATABASE_URL",
            "/proc/eventflows/nowhere/eventflows.db",
        )
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stderr(&broken).contains("error: could not"),
        "{}",
        stderr(&broken)
    );
    assert!(!stderr(&broken).contains("panicked"));

    let bad_setting = Command::new(env!("CARGO_BIN_EXE_eventflows"))
        .arg("migrate")
        .env("EVENTFLOWS_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(bad_setting.status.code(), Some(1));
    assert!(stderr(&bad_setting).contains("EVENTFLOWS_LISTEN"));
}

#[test]
fn the_demo_can_connect_the_local_broker_once() {
    let db = TestDb::fresh();
    let broker = crate::kafka::bootstrap();
    for _ in 0..2 {
        let out = eventflows(&db, &["demo", "--kafka", broker], "");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("Broker connection 'local tansu'"),
            "{}",
            stdout(&out)
        );
    }
    let url = db.url.clone();
    let count: i64 = {
        use diesel::prelude::*;
        let db = server::db::Db::open(&url).unwrap();
        db.run_blocking(|c| {
            server::db::schema::broker_connections::table
                .count()
                .get_result(c)
        })
        .unwrap()
    };
    assert_eq!(count, 1);
    let unreachable = eventflows(&TestDb::fresh(), &["demo", "--kafka", "127.0.0.1:1"], "");
    assert_fails_with(&unreachable, "127.0.0.1:1");
}

#[test]
fn a_new_data_directory_and_database_are_private_to_their_user() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::fresh();
    let data = db.dir.join("new").join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_eventflows"))
        .arg("migrate")
        .env("EVENTFLOWS_DATA_DIR", &data)
        .env_remove("EVENTFLOWS_DATABASE_URL")
        .env_remove("EVENTFLOWS_SECRET_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&db.dir.join("new")), 0o700, "its new parent");
    assert_eq!(mode(&data.join("eventflows.db")), 0o600, "SQLite file");
}
