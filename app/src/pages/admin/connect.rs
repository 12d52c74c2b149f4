use leptos::prelude::*;

use crate::components::style;
use leptos_router::{NavigateOptions, components::A, hooks::use_navigate};

use crate::api::connect_broker;
use crate::components::{FieldError, FormError, Submit, TextField, invalid};
use crate::domain::{BrokerKind, NewBrokerConnection, SaslMechanism, SecurityProtocol};

/// **Connect queue**: the form that tests a broker connection and saves it
/// only when the broker answers. On failure everything typed stays.
#[component]
pub fn ConnectBrokerPage() -> impl IntoView {
    let navigate = use_navigate();
    let kind = RwSignal::new(BrokerKind::Kafka.as_str().to_owned());
    let name = RwSignal::new(String::new());
    let bootstrap = RwSignal::new(String::new());
    let protocol = RwSignal::new("PLAINTEXT".to_owned());
    let mechanism = RwSignal::new("SCRAM-SHA-512".to_owned());
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let ca_pem = RwSignal::new(String::new());
    let region = RwSignal::new(String::new());
    let endpoint_url = RwSignal::new(String::new());
    let access_key_id = RwSignal::new(String::new());
    let secret_access_key = RwSignal::new(String::new());
    let default_credentials = RwSignal::new(false);
    let connection_string = RwSignal::new(String::new());
    let namespace = RwSignal::new(String::new());
    let key_name = RwSignal::new(String::new());
    let key = RwSignal::new(String::new());

    let is_kafka = move || BrokerKind::parse(&kind.get()) == Some(BrokerKind::Kafka);
    let is_sqs = move || BrokerKind::parse(&kind.get()) == Some(BrokerKind::Sqs);
    let is_bus = move || BrokerKind::parse(&kind.get()) == Some(BrokerKind::ServiceBus);
    let by_fields = move || connection_string.get().trim().is_empty();
    let uses_sasl = move || {
        is_kafka() && SecurityProtocol::parse(&protocol.get()).is_some_and(|p| p.uses_sasl())
    };
    let uses_tls = move || {
        is_kafka() && SecurityProtocol::parse(&protocol.get()).is_some_and(|p| p.uses_tls())
    };
    let uses_key = move || !default_credentials.get();

    let connect = Submit::new(connect_broker, move |_| {
        navigate("/admin/queues", NavigateOptions::default())
    });
    let (error, pending) = (connect.error, connect.pending());

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        connect.run(NewBrokerConnection {
            kind: kind.get_untracked(),
            name: name.get_untracked(),
            bootstrap_servers: bootstrap.get_untracked(),
            security_protocol: protocol.get_untracked(),
            sasl_mechanism: mechanism.get_untracked(),
            username: username.get_untracked(),
            password: password.get_untracked(),
            ca_pem: ca_pem.get_untracked(),
            region: region.get_untracked(),
            endpoint_url: endpoint_url.get_untracked(),
            access_key_id: access_key_id.get_untracked(),
            secret_access_key: secret_access_key.get_untracked(),
            use_default_credentials: default_credentials.get_untracked(),
            connection_string: connection_string.get_untracked(),
            namespace: namespace.get_untracked(),
            key_name: key_name.get_untracked(),
            key: key.get_untracked(),
        });
    };

    let input_class = style::INPUT;

    view! {
        <h1 class="text-2xl font-semibold">"Connect queue"</h1>
        <p class="mt-1 text-slate-600">
            "The broker is contacted when you connect; the connection is saved only if it answers. Kafka, Amazon SQS and Azure Service Bus are supported."
        </p>
        <form on:submit=on_submit class="mt-6 max-w-xl space-y-4 rounded-lg bg-white p-6 shadow" novalidate>
            <FormError error=error />
            <div>
                <label for="broker-kind" class="block text-sm font-medium">"Type"</label>
                <select id="broker-kind" aria-describedby="broker-kind-error" aria-invalid=invalid(error, "kind") class=input_class bind:value=kind>
                    {BrokerKind::ALL
                        .into_iter()
                        .map(|k| view! { <option value=k.as_str()>{k.label()}</option> })
                        .collect_view()}
                </select>
                <FieldError error=error field="kind" input="broker-kind" />
            </div>
            <TextField id="broker-name" label="Name" field="name" value=name error=error />
            <Show when=is_bus>
                <TextField
                    id="broker-connection-string"
                    label="Connection string"
                    field="connection_string"
                    value=connection_string
                    error=error
                    secret=true
                    placeholder="Endpoint=sb://name.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…"
                    help="From the namespace's Shared access policies. Or leave it empty and give the namespace, key name and key."
                />
                <Show when=by_fields>
                    <TextField id="broker-namespace" label="Namespace" field="namespace" value=namespace error=error placeholder="name.servicebus.windows.net" />
                    <TextField id="broker-key-name" label="Shared access key name" field="key_name" value=key_name error=error placeholder="RootManageSharedAccessKey" />
                    <TextField id="broker-key" label="Shared access key" field="key" value=key error=error secret=true />
                </Show>
            </Show>
            <Show when=is_sqs>
                <TextField id="broker-region" label="Region" field="region" value=region error=error placeholder="us-east-1" />
                <TextField
                    id="broker-endpoint"
                    label="Endpoint URL (optional)"
                    field="endpoint_url"
                    value=endpoint_url
                    error=error
                    placeholder="https://sqs.example.com"
                    help="Only for an SQS-compatible service; leave empty for AWS."
                />
                <label class="flex items-center gap-2 text-sm">
                    <input type="checkbox" bind:checked=default_credentials />
                    "Use the server's default AWS credentials"
                </label>
                <Show when=uses_key>
                    <TextField id="broker-access-key" label="Access key ID" field="access_key_id" value=access_key_id error=error />
                    <TextField id="broker-secret-key" label="Secret access key" field="secret_access_key" value=secret_access_key error=error secret=true />
                </Show>
            </Show>
            <Show when=is_kafka>
            <TextField
                id="broker-bootstrap"
                label="Bootstrap servers"
                field="bootstrap_servers"
                value=bootstrap
                error=error
                placeholder="kafka-1:9092,kafka-2:9092"
            />
            <div>
                <label for="broker-protocol" class="block text-sm font-medium">"Security protocol"</label>
                <select id="broker-protocol" aria-describedby="broker-protocol-error" aria-invalid=invalid(error, "security_protocol") class=input_class bind:value=protocol>
                    {SecurityProtocol::ALL
                        .into_iter()
                        .map(|p| view! { <option value=p.as_str()>{p.as_str()}</option> })
                        .collect_view()}
                </select>
                <FieldError error=error field="security_protocol" input="broker-protocol" />
            </div>
            </Show>
            <Show when=uses_sasl>
                <div>
                    <label for="broker-mechanism" class="block text-sm font-medium">"SASL mechanism"</label>
                    <select id="broker-mechanism" aria-describedby="broker-mechanism-error" aria-invalid=invalid(error, "sasl_mechanism") class=input_class bind:value=mechanism>
                        {SaslMechanism::ALL
                            .into_iter()
                            .map(|m| view! { <option value=m.as_str()>{m.as_str()}</option> })
                            .collect_view()}
                    </select>
                    <FieldError error=error field="sasl_mechanism" input="broker-mechanism" />
                </div>
                <TextField id="broker-username" label="Username" field="username" value=username error=error />
                <TextField id="broker-password" label="Password" field="password" value=password error=error secret=true />
            </Show>
            <Show when=uses_tls>
                <div>
                    <label for="broker-ca" class="block text-sm font-medium">"CA certificate (PEM)"</label>
                    <textarea
                        id="broker-ca"
                        aria-describedby="broker-ca-error"
                        aria-invalid=invalid(error, "ca_pem")
                        rows="6"
                        class=format!("{input_class} font-mono text-xs")
                        placeholder="-----BEGIN CERTIFICATE-----"
                        bind:value=ca_pem
                    ></textarea>
                    <p class="mt-1 text-xs text-slate-500">"Leave empty to trust the system's certificate authorities."</p>
                    <FieldError error=error field="ca_pem" input="broker-ca" />
                </div>
            </Show>
            <div class="flex items-center gap-3 pt-2">
                <button
                    type="submit"
                    class="rounded bg-blue-700 px-4 py-2 font-medium text-white hover:bg-blue-800 disabled:opacity-60"
                    disabled=move || pending.get()
                >
                    {move || if pending.get() { "Connecting…" } else { "Connect to Broker" }}
                </button>
                <A href="/admin/queues" attr:class="text-slate-600 hover:underline">"Cancel"</A>
            </div>
        </form>
    }
}
