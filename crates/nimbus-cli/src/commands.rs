use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use http::Method;
use nimbus_api::types::{
    AsyncAccepted, DURATION_HEADER, DeadLetterCount, DeadLetterSelection, DeadLetters, DeadMessages, DeployResult,
    FunctionInfo, FunctionList, IDEMPOTENCY_KEY_HEADER, InvocationList, InvocationView, LogEntry, LogPage, QueueList,
    QueueSent,
};
use nimbus_core::{FunctionName, REQUEST_ID_HEADER};

use crate::args::{ClientCommand, Connection, DlqCommand, InvocationCommand, QueueCommand};
use crate::client::ApiClient;

/// Runs a client command; the error is the one-line reason to print.
pub async fn run_client(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Deploy { path, conn } => deploy(&client(&conn)?, &path).await,
        ClientCommand::Invoke { name, data, data_file, method, path, headers, run_async, idempotency_key, conn } => {
            let body = match (data, data_file) {
                (Some(d), _) if d.starts_with('@') => Some(read_data_file(Path::new(&d[1..]))?),
                (Some(d), _) => Some(Bytes::from(d)),
                (None, Some(f)) => Some(read_data_file(&f)?),
                (None, None) => None,
            };
            let call = Call { body, method, path, headers };
            if run_async {
                invoke_async(&client(&conn)?, &name, call, idempotency_key).await
            } else {
                invoke(&client(&conn)?, &name, call).await
            }
        }
        ClientCommand::Invocation(InvocationCommand::Get { id, conn }) => invocation_get(&client(&conn)?, &id).await,
        ClientCommand::Invocation(InvocationCommand::Ls { name, limit, conn }) => {
            invocation_ls(&client(&conn)?, &name, limit).await
        }
        ClientCommand::Queue(QueueCommand::Send { queue, data, conn }) => {
            let body = match data.strip_prefix('@') {
                Some(file) => read_data_file(Path::new(file))?,
                None => Bytes::from(data),
            };
            queue_send(&client(&conn)?, &queue, body).await
        }
        ClientCommand::Queue(QueueCommand::Ls { conn }) => queue_ls(&client(&conn)?).await,
        ClientCommand::Queue(QueueCommand::Dlq { queue, redrive, conn }) => {
            queue_dlq(&client(&conn)?, &queue, redrive).await
        }
        ClientCommand::Dlq(DlqCommand::Ls { name, conn }) => dlq_ls(&client(&conn)?, &name).await,
        ClientCommand::Dlq(DlqCommand::Redrive { name, ids, conn }) => {
            dlq_change(&client(&conn)?, &name, "redrive", ids).await
        }
        ClientCommand::Dlq(DlqCommand::Purge { name, ids, conn }) => {
            dlq_change(&client(&conn)?, &name, "purge", ids).await
        }
        ClientCommand::Ls { conn } => ls(&client(&conn)?).await,
        ClientCommand::Logs { name, limit, follow, conn } => logs(&client(&conn)?, &name, limit, follow).await,
        ClientCommand::Rm { name, conn } => rm(&client(&conn)?, &name).await,
    }
}

fn client(conn: &Connection) -> anyhow::Result<ApiClient> {
    ApiClient::new(&conn.api, conn.token.clone())
}

fn checked_name(name: &str) -> anyhow::Result<FunctionName> {
    Ok(FunctionName::parse(name)?)
}

fn read_data_file(path: &Path) -> anyhow::Result<Bytes> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut data).context("cannot read the body from stdin")?;
    } else {
        data = std::fs::read(path).with_context(|| format!("cannot read --data-file {}", path.display()))?;
    }
    Ok(Bytes::from(data))
}

async fn deploy(client: &ApiClient, path: &Path) -> anyhow::Result<()> {
    let (manifest_path, dir) = nimbus_manifest::locate(path);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!("cannot read {} (deploy takes a directory holding nimbus.toml, or a manifest)", manifest_path.display())
    })?;
    // Checked here first so errors name the user's own file and line.
    let spec = nimbus_manifest::parse(&text, &manifest_path.display().to_string())?;
    let archive = nimbus_api::pack_function(&text, &spec, &manifest_path, &dir)?;
    let response = client
        .request(
            Method::POST,
            "/v1/deploy",
            &[("content-type".into(), "application/x-tar".into())],
            Bytes::from(archive),
        )
        .await?
        .ok()?;
    let result: DeployResult = response.json()?;
    let f = &result.function;
    let how = match (f.runtime.as_str(), result.compiled) {
        ("process", _) => "prepared the code",
        (_, true) => "compiled",
        (_, false) => "reused the compiled artifact",
    };
    println!("deployed {} version {} ({how} in {:.1} ms)", f.name, f.version, result.compile_ms);
    for route in &f.routes {
        println!("  route {route}");
    }
    Ok(())
}

/// What `nimbus invoke` sends.
struct Call {
    body: Option<Bytes>,
    method: Option<String>,
    path: Option<String>,
    headers: Vec<String>,
}

impl Call {
    /// The query string and headers of the API call.
    fn encode(&self) -> anyhow::Result<(String, Vec<(String, String)>)> {
        let method = self.method.clone().unwrap_or_else(|| if self.body.is_some() { "POST" } else { "GET" }.to_owned());
        let mut query = format!("?method={}", encode(&method));
        if let Some(path) = &self.path {
            query.push_str(&format!("&path={}", encode(path)));
        }
        let mut pairs = Vec::new();
        for h in &self.headers {
            let (k, v) = h.split_once(':').with_context(|| format!("--header {h:?}: write NAME:VALUE"))?;
            pairs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Ok((query, pairs))
    }
}

async fn invoke(client: &ApiClient, name: &str, call: Call) -> anyhow::Result<()> {
    let name = checked_name(name)?;
    let (query, pairs) = call.encode()?;
    let response = client
        .request(Method::POST, &format!("/v1/functions/{name}/invoke{query}"), &pairs, call.body.unwrap_or_default())
        .await?;
    if let Some(e) = response.platform_error() {
        let id = e.error.request_id.map(|id| format!(" (request id {id})")).unwrap_or_default();
        anyhow::bail!("{}: {}{id}", e.error.code, e.error.message);
    }
    std::io::stdout().write_all(&response.body)?;
    std::io::stdout().flush()?;
    let header = |n: &str| response.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    eprintln!(
        "status: {}  duration: {} ms  request-id: {}",
        response.status.as_u16(),
        header(DURATION_HEADER),
        header(REQUEST_ID_HEADER)
    );
    if response.status.is_client_error() || response.status.is_server_error() {
        anyhow::bail!("the function answered {}", response.status);
    }
    Ok(())
}

async fn invoke_async(
    client: &ApiClient,
    name: &str,
    call: Call,
    idempotency_key: Option<String>,
) -> anyhow::Result<()> {
    let name = checked_name(name)?;
    let (query, mut pairs) = call.encode()?;
    if let Some(key) = idempotency_key {
        pairs.push((IDEMPOTENCY_KEY_HEADER.to_owned(), key));
    }
    let accepted: AsyncAccepted = client
        .request(
            Method::POST,
            &format!("/v1/functions/{name}/invocations{query}"),
            &pairs,
            call.body.unwrap_or_default(),
        )
        .await?
        .ok()?
        .json()?;
    println!("{}", accepted.id);
    if accepted.duplicate {
        eprintln!("(an earlier invocation with this idempotency key)");
    }
    Ok(())
}

/// An asynchronous invocation as `nimbus invocation get` prints it.
pub fn format_invocation(v: &InvocationView) -> String {
    let mut out = format!(
        "id:        {}\nfunction:  {}\nstatus:    {}\ncreated:   {}\nrequest:   {} {} ({} bytes)\n",
        v.id,
        v.function,
        v.status,
        v.created_at,
        v.method,
        v.path,
        v.payload.len()
    );
    if let Some(t) = &v.next_attempt_at {
        out.push_str(&format!("next:      {t}\n"));
    }
    if let Some(t) = &v.finished_at {
        out.push_str(&format!("finished:  {t}\n"));
    }
    out.push_str(&format!("attempts:  {}\n", v.attempts.len()));
    for (i, a) in v.attempts.iter().enumerate() {
        out.push_str(&format!(
            "  {}. {}  {} {}  {:.3} ms  {}{}\n",
            i + 1,
            a.started_at,
            a.status,
            a.outcome,
            a.duration_ms,
            a.request_id,
            a.error.as_ref().map(|e| format!("  {e}")).unwrap_or_default()
        ));
    }
    if let Some(status) = v.result_status {
        out.push_str(&format!("result:    {status} {}\n", v.result.as_deref().unwrap_or_default()));
    }
    if let Some(e) = &v.error {
        out.push_str(&format!("error:     {e}\n"));
    }
    out
}

async fn invocation_get(client: &ApiClient, id: &str) -> anyhow::Result<()> {
    let v: InvocationView = client
        .request(Method::GET, &format!("/v1/invocations/{}", encode(id)), &[], Bytes::new())
        .await?
        .ok()?
        .json()?;
    print!("{}", format_invocation(&v));
    Ok(())
}

async fn invocation_ls(client: &ApiClient, name: &str, limit: u32) -> anyhow::Result<()> {
    let name = checked_name(name)?;
    let list: InvocationList = client
        .request(Method::GET, &format!("/v1/functions/{name}/invocations?limit={limit}"), &[], Bytes::new())
        .await?
        .ok()?
        .json()?;
    for v in &list.invocations {
        println!("{}  {}  {:<9}  attempts: {}", v.id, v.created_at, v.status, v.attempts.len());
    }
    Ok(())
}

async fn queue_send(client: &ApiClient, queue: &str, body: Bytes) -> anyhow::Result<()> {
    let sent: QueueSent = client
        .request(Method::POST, &format!("/v1/queues/{}/messages", encode(queue)), &[], body)
        .await?
        .ok()?
        .json()?;
    println!("{}", sent.id);
    Ok(())
}

async fn queue_ls(client: &ApiClient) -> anyhow::Result<()> {
    let list: QueueList = client.request(Method::GET, "/v1/queues", &[], Bytes::new()).await?.ok()?.json()?;
    println!("{:<24} {:>8} {:>9} {:>6} {:>12}  CONSUMERS", "QUEUE", "WAITING", "IN FLIGHT", "DEAD", "OLDEST (s)");
    for q in &list.queues {
        let consumers = if q.consumers.is_empty() { "-".to_owned() } else { q.consumers.join(",") };
        println!(
            "{:<24} {:>8} {:>9} {:>6} {:>12.1}  {consumers}",
            q.name, q.ready, q.in_flight, q.dead, q.oldest_ready_age_s
        );
    }
    Ok(())
}

async fn queue_dlq(client: &ApiClient, queue: &str, redrive: bool) -> anyhow::Result<()> {
    let queue = encode(queue);
    if redrive {
        let done: DeadLetterCount = client
            .request(Method::POST, &format!("/v1/queues/{queue}/dlq/redrive"), &[], Bytes::new())
            .await?
            .ok()?
            .json()?;
        println!("redrove {} messages of {queue}", done.count);
        return Ok(());
    }
    let dead: DeadMessages =
        client.request(Method::GET, &format!("/v1/queues/{queue}/dlq"), &[], Bytes::new()).await?.ok()?.json()?;
    if dead.messages.is_empty() {
        println!("the dead-letter queue of {queue} is empty");
    }
    for m in &dead.messages {
        println!(
            "{}  sent {}  received {} times  error: {}",
            m.id,
            m.sent_at,
            m.receive_count,
            m.error.as_deref().unwrap_or("-")
        );
        println!("  body: {}", m.body);
    }
    Ok(())
}

async fn dlq_ls(client: &ApiClient, name: &str) -> anyhow::Result<()> {
    let name = checked_name(name)?;
    let dead: DeadLetters =
        client.request(Method::GET, &format!("/v1/functions/{name}/dlq"), &[], Bytes::new()).await?.ok()?.json()?;
    if dead.entries.is_empty() {
        println!("the dead-letter queue of {name} is empty");
    }
    for v in &dead.entries {
        println!(
            "{}  {}  attempts: {}  error: {}",
            v.id,
            v.finished_at.as_deref().unwrap_or("-"),
            v.attempts.len(),
            v.error.as_deref().unwrap_or("-")
        );
        println!("  payload: {}", v.payload);
    }
    Ok(())
}

async fn dlq_change(client: &ApiClient, name: &str, action: &str, ids: Vec<String>) -> anyhow::Result<()> {
    let name = checked_name(name)?;
    let body = serde_json::to_vec(&DeadLetterSelection { ids })?;
    let done: DeadLetterCount = client
        .request(
            Method::POST,
            &format!("/v1/functions/{name}/dlq/{action}"),
            &[("content-type".into(), "application/json".into())],
            Bytes::from(body),
        )
        .await?
        .ok()?
        .json()?;
    let verb = if action == "redrive" { "redrove" } else { "purged" };
    println!("{verb} {} invocations of {name}", done.count);
    Ok(())
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn ls(client: &ApiClient) -> anyhow::Result<()> {
    let list: FunctionList = client.request(Method::GET, "/v1/functions", &[], Bytes::new()).await?.ok()?.json()?;
    print!("{}", format_table(&list.functions));
    Ok(())
}

/// The `nimbus ls` table.
pub fn format_table(functions: &[FunctionInfo]) -> String {
    let headers = ["NAME", "RUNTIME", "ROUTES", "VERSION", "DEPLOYED", "NEXT RUN"];
    let rows: Vec<[String; 6]> = functions
        .iter()
        .map(|f| {
            let routes = if f.routes.is_empty() { "-".to_owned() } else { f.routes.join(" ") };
            let next = f.next_run.clone().unwrap_or_else(|| "-".to_owned());
            [f.name.clone(), f.runtime.clone(), routes, f.version.to_string(), f.deployed_at.clone(), next]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let text: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(headers);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
    out
}

/// One log entry as `nimbus logs` prints it.
pub fn format_log_entry(e: &LogEntry) -> String {
    let mut out = format!("{}  {}  {} {}  {:.3} ms\n", e.time, e.request_id, e.status, e.outcome, e.duration_ms);
    for line in e.output.lines() {
        out.push_str("  | ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

async fn logs(client: &ApiClient, name: &str, limit: u32, follow: bool) -> anyhow::Result<()> {
    let name = checked_name(name)?;
    let page: LogPage = client
        .request(Method::GET, &format!("/v1/functions/{name}/logs?limit={limit}"), &[], Bytes::new())
        .await?
        .ok()?
        .json()?;
    let mut stdout = std::io::stdout();
    for e in &page.entries {
        stdout.write_all(format_log_entry(e).as_bytes())?;
    }
    stdout.flush()?;
    if !follow {
        return Ok(());
    }
    let mut after = page.last_seq;
    loop {
        let path = format!("/v1/functions/{name}/logs?after={after}&limit=1000&wait_ms=25000");
        let page: LogPage = client.request(Method::GET, &path, &[], Bytes::new()).await?.ok()?.json()?;
        for e in &page.entries {
            stdout.write_all(format_log_entry(e).as_bytes())?;
        }
        stdout.flush()?;
        after = page.last_seq;
    }
}

async fn rm(client: &ApiClient, name: &str) -> anyhow::Result<()> {
    let name = checked_name(name)?;
    client.request(Method::DELETE, &format!("/v1/functions/{name}"), &[], Bytes::new()).await?.ok()?;
    println!("removed {name}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::Limits;

    #[test]
    fn golden_ls_table() {
        let f = |name: &str, routes: Vec<&str>, version| FunctionInfo {
            name: name.into(),
            runtime: "wasm".into(),
            routes: routes.into_iter().map(String::from).collect(),
            version,
            deployed_at: "2026-11-22T15:04:05.123Z".into(),
            deployed_at_ms: 0,
            component_sha256: "ab".into(),
            limits: Limits::default(),
            in_flight: 0,
            next_run: None,
            instances: None,
        };
        let table = format_table(&[f("hello", vec!["GET,POST /hello"], 3), f("api-backend", vec![], 12)]);
        assert_eq!(
            table,
            "NAME         RUNTIME  ROUTES           VERSION  DEPLOYED                  NEXT RUN\n\
             hello        wasm     GET,POST /hello  3        2026-11-22T15:04:05.123Z  -\n\
             api-backend  wasm     -                12       2026-11-22T15:04:05.123Z  -\n"
        );
    }

    #[test]
    fn golden_log_entry() {
        let e = LogEntry {
            seq: 1,
            time: "2026-11-22T15:04:05.123Z".into(),
            request_id: "0123abcd".into(),
            status: 504,
            outcome: "function_timeout".into(),
            duration_ms: 3000.25,
            output: "starting\n[nimbus: function_timeout: too slow]\n".into(),
            cold: false,
            init_ms: None,
        };
        assert_eq!(
            format_log_entry(&e),
            "2026-11-22T15:04:05.123Z  0123abcd  504 function_timeout  3000.250 ms\n  | starting\n  | [nimbus: function_timeout: too slow]\n"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("/a b?x=1&y"), "/a%20b%3Fx%3D1%26y");
    }
}
