use leptos::prelude::*;

use crate::components::style;
use leptos_router::{NavigateOptions, components::A, hooks::use_navigate};

use crate::api::connect_broker;
use crate::components::{FieldError, FormError, Submit, invalid};
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

    let is_kafka = move || BrokerKind::parse(&kind.get()) == Some(BrokerKind::Kafka);
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
        });
    };

    let input_class = style::INPUT;

    view! {
        <h1 class="text-2xl font-semibold">"Connect queue"</h1>
        <p class="mt-1 text-slate-600">
            "The broker is contacted when you connect; the connection is saved only if it answers. Kafka and Amazon SQS are supported."
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
            <div>
                <label for="broker-name" class="block text-sm font-medium">"Name"</label>
                <input id="broker-name" aria-describedby="broker-name-error" aria-invalid=invalid(error, "name") class=input_class bind:value=name autocomplete="off" />
                <FieldError error=error field="name" input="broker-name" />
            </div>
            <Show when=move || !is_kafka()>
                <div>
                    <label for="broker-region" class="block text-sm font-medium">"Region"</label>
                    <input id="broker-region" aria-describedby="broker-region-error" aria-invalid=invalid(error, "region") class=input_class placeholder="us-east-1" bind:value=region autocomplete="off" />
                    <FieldError error=error field="region" input="broker-region" />
                </div>
                <div>
                    <label for="broker-endpoint" class="block text-sm font-medium">"Endpoint URL (optional)"</label>
                    <input id="broker-endpoint" aria-describedby="broker-endpoint-help broker-endpoint-error" aria-invalid=invalid(error, "endpoint_url") class=input_class placeholder="https://sqs.example.com" bind:value=endpoint_url autocomplete="off" />
                    <p id="broker-endpoint-help" class="mt-1 text-xs text-slate-500">"Only for an SQS-compatible service; leave empty for AWS."</p>
                    <FieldError error=error field="endpoint_url" input="broker-endpoint" />
                </div>
                <label class="flex items-center gap-2 text-sm">
                    <input type="checkbox" bind:checked=default_credentials />
                    "Use the server's default AWS credentials"
                </label>
                <Show when=uses_key>
                    <div>
                        <label for="broker-access-key" class="block text-sm font-medium">"Access key ID"</label>
                        <input id="broker-access-key" aria-describedby="broker-access-key-error" aria-invalid=invalid(error, "access_key_id") class=input_class bind:value=access_key_id autocomplete="off" />
                        <FieldError error=error field="access_key_id" input="broker-access-key" />
                    </div>
                    <div>
                        <label for="broker-secret-key" class="block text-sm font-medium">"Secret access key"</label>
                        <input id="broker-secret-key" type="password" aria-describedby="broker-secret-key-error" aria-invalid=invalid(error, "secret_access_key") class=input_class bind:value=secret_access_key autocomplete="new-password" />
                        <FieldError error=error field="secret_access_key" input="broker-secret-key" />
                    </div>
                </Show>
            </Show>
            <Show when=is_kafka>
            <div>
                <label for="broker-bootstrap" class="block text-sm font-medium">"Bootstrap servers"</label>
                <input
                    id="broker-bootstrap"
                    aria-describedby="broker-bootstrap-error"
                    aria-invalid=invalid(error, "bootstrap_servers")
                    class=input_class
                    placeholder="kafka-1:9092,kafka-2:9092"
                    bind:value=bootstrap
                    autocomplete="off"
                />
                <FieldError error=error field="bootstrap_servers" input="broker-bootstrap" />
            </div>
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
                <div>
                    <label for="broker-username" class="block text-sm font-medium">"Username"</label>
                    <input id="broker-username" aria-describedby="broker-username-error" aria-invalid=invalid(error, "username") class=input_class bind:value=username autocomplete="off" />
                    <FieldError error=error field="username" input="broker-username" />
                </div>
                <div>
                    <label for="broker-password" class="block text-sm font-medium">"Password"</label>
                    <input
                        id="broker-password"
                        aria-describedby="broker-password-error"
                        aria-invalid=invalid(error, "password")
                        type="password"
                        class=input_class
                        bind:value=password
                        autocomplete="new-password"
                    />
                    <FieldError error=error field="password" input="broker-password" />
                </div>
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
