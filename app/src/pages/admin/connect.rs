use leptos::prelude::*;

use crate::components::style;
use leptos_router::{NavigateOptions, components::A, hooks::use_navigate};

use crate::api::connect_broker;
use crate::components::{FieldError, FormError, Submit, invalid};
use crate::domain::{NewBrokerConnection, SaslMechanism, SecurityProtocol};

/// **Connect queue**: the form that tests a broker connection and saves it
/// only when the broker answers. On failure everything typed stays.
#[component]
pub fn ConnectBrokerPage() -> impl IntoView {
    let navigate = use_navigate();
    let name = RwSignal::new(String::new());
    let bootstrap = RwSignal::new(String::new());
    let protocol = RwSignal::new("PLAINTEXT".to_owned());
    let mechanism = RwSignal::new("SCRAM-SHA-512".to_owned());
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let ca_pem = RwSignal::new(String::new());

    let uses_sasl = move || SecurityProtocol::parse(&protocol.get()).is_some_and(|p| p.uses_sasl());
    let uses_tls = move || SecurityProtocol::parse(&protocol.get()).is_some_and(|p| p.uses_tls());

    let connect = Submit::new(connect_broker, move |_| {
        navigate("/admin/queues", NavigateOptions::default())
    });
    let (error, pending) = (connect.error, connect.pending());

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        connect.run(NewBrokerConnection {
            name: name.get_untracked(),
            bootstrap_servers: bootstrap.get_untracked(),
            security_protocol: protocol.get_untracked(),
            sasl_mechanism: mechanism.get_untracked(),
            username: username.get_untracked(),
            password: password.get_untracked(),
            ca_pem: ca_pem.get_untracked(),
        });
    };

    let input_class = style::INPUT;

    view! {
        <h1 class="text-2xl font-semibold">"Connect queue"</h1>
        <p class="mt-1 text-slate-600">
            "The broker is contacted when you connect; the connection is saved only if it answers. Currently the only broker type supported is Kafka."
        </p>
        <form on:submit=on_submit class="mt-6 max-w-xl space-y-4 rounded-lg bg-white p-6 shadow" novalidate>
            <FormError error=error />
            <div>
                <label for="broker-name" class="block text-sm font-medium">"Name"</label>
                <input id="broker-name" aria-describedby="broker-name-error" aria-invalid=invalid(error, "name") class=input_class bind:value=name autocomplete="off" />
                <FieldError error=error field="name" input="broker-name" />
            </div>
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
