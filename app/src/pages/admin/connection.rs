use leptos::prelude::*;
use leptos_router::{
    NavigateOptions,
    components::A,
    hooks::{use_navigate, use_params_map, use_query_map},
};

use crate::api::{MAX_PARTITIONS, create_topic, delete_broker_connection, get_broker_connection};
use crate::components::{
    ConfirmActions, Dialog, EmptyState, FieldError, FormError, Loaded, StatusBadge, Submit,
    SuccessNotice, Table, invalid,
};
use crate::domain::{AppError, BrokerConnectionDetails, BrokerKind, TopicInfo};
use crate::pages::admin::TopicSidesheet;

/// A broker connection's details page: settings, status, topics, the topic
/// sidesheet (`?topic=NAME`), Create topic and Delete.
#[component]
pub fn ConnectionDetailsPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let details = LocalResource::new(move || get_broker_connection(id.get()));
    // Lives here so that it survives the reload of the details.
    let notice = RwSignal::new(None::<String>);

    view! {
        <A href="/admin/queues" attr:class="text-sm text-blue-700 hover:underline">"← Queue manager"</A>
        <Loaded
            value=details
            what="the broker connection"
            not_found=|| view! {
                <h1 class="mt-2 text-2xl font-semibold">"Broker connection not found"</h1>
                <p class="mt-2">"It may have been deleted."</p>
            }
            view=move |d| view! {
                <Details details=d notice=notice reload=Callback::new(move |_| details.refetch()) />
            }
        />
    }
}

#[component]
fn Details(
    details: BrokerConnectionDetails,
    notice: RwSignal<Option<String>>,
    reload: Callback<()>,
) -> impl IntoView {
    let query = use_query_map();
    let selected = Memo::new(move |_| query.read().get("topic"));
    let confirm_delete = RwSignal::new(false);
    let id = details.id.clone();
    let topics = details.topics.clone();
    let flows = details.flows.clone();
    let name = details.name.clone();

    view! {
        <div class="mt-2 flex items-start justify-between gap-4">
            <div>
                <h1 class="text-2xl font-semibold">{details.name.clone()}</h1>
                <div class="mt-1"><StatusBadge status=details.status.clone() /></div>
            </div>
            <button
                type="button"
                class="rounded border border-red-300 px-4 py-2 text-sm font-medium text-red-700 hover:bg-red-50"
                on:click=move |_| confirm_delete.set(true)
            >
                "Delete"
            </button>
        </div>
        <Settings details=details.clone() />
        <TopicsSection
            kind=details.kind
            connection_id=id.clone()
            topics=topics
            reload=reload
            selected=selected
            created=notice
        />
        {move || {
            selected
                .get()
                .map(|topic| view! { <TopicSidesheet connection_id=id.clone() topic=topic /> })
        }}
        <Show when=move || confirm_delete.get()>
            <DeleteDialog
                id=details.id.clone()
                name=name.clone()
                flows=flows.clone()
                on_close=Callback::new(move |_| confirm_delete.set(false))
            />
        </Show>
    }
}

#[component]
fn Settings(details: BrokerConnectionDetails) -> impl IntoView {
    let row = |term: &'static str, value: String| {
        view! {
            <div class="flex gap-4 py-1">
                <dt class="w-48 shrink-0 text-slate-500">{term}</dt>
                <dd class="break-all">{value}</dd>
            </div>
        }
    };
    let set = |b: bool| {
        if b {
            "set".to_owned()
        } else {
            "not set".to_owned()
        }
    };
    view! {
        <section aria-labelledby="settings-title" class="mt-6 rounded-lg bg-white p-6 shadow">
            <h2 id="settings-title" class="text-lg font-semibold">"Settings"</h2>
            <dl class="mt-2 text-sm">
                {row("Type", details.kind.label().to_owned())}
                {match details.kind {
                    BrokerKind::Kafka => view! {
                        {row("Bootstrap servers", details.bootstrap_servers.clone())}
                        {row("Security protocol", details.security_protocol.clone())}
                        {details.sasl_mechanism.clone().map(|m| row("SASL mechanism", m))}
                        {details.username.clone().map(|u| row("Username", u))}
                        {details.password_set.then(|| row("Password", set(true)))}
                        {row("CA certificate", set(details.ca_certificate_set))}
                    }
                    .into_any(),
                    BrokerKind::Sqs => view! {
                        {row("Region", details.region.clone().unwrap_or_default())}
                        {row("Endpoint URL", details.endpoint_url.clone().unwrap_or_else(|| "AWS".into()))}
                        {match details.access_key_id.clone() {
                            Some(id) => view! {
                                {row("Access key ID", id)}
                                {row("Secret access key", set(details.password_set))}
                            }
                            .into_any(),
                            None => row("Credentials", "The server's default AWS credentials".into()).into_any(),
                        }}
                    }
                    .into_any(),
                    BrokerKind::ServiceBus => view! {
                        {row("Namespace", details.bootstrap_servers.clone())}
                        {row("Shared access key name", details.username.clone().unwrap_or_default())}
                        {row("Shared access key", set(details.password_set))}
                    }
                    .into_any(),
                }}
            </dl>
            <p class="mt-3 text-sm text-slate-500">
                "A broker connection cannot be edited. To change it, connect a new queue and delete this one."
            </p>
        </section>
    }
}

#[component]
fn TopicsSection(
    kind: BrokerKind,
    connection_id: String,
    topics: Vec<TopicInfo>,
    reload: Callback<()>,
    selected: Memo<Option<String>>,
    created: RwSignal<Option<String>>,
) -> impl IntoView {
    // A queue has no partitions to choose.
    let sqs = kind != BrokerKind::Kafka;
    let bus = kind == BrokerKind::ServiceBus;
    let creating = RwSignal::new(false);
    let empty = topics.is_empty();
    let rows = topics
        .into_iter()
        .map(|t| {
            let href = format!("/admin/queues/{connection_id}?topic={}", t.name);
            let name = t.name.clone();
            let current = Memo::new(move |_| selected.get().as_deref() == Some(name.as_str()));
            view! {
                <tr class="border-t border-slate-100" class:bg-blue-50=move || current.get()>
                    <td class="px-4 py-2 font-medium">
                        <A href=href attr:class="text-blue-700 hover:underline" attr:aria-current=move || current.get().then_some("true")>
                            {t.name.clone()}
                        </A>
                    </td>
                    {match (t.queue, t.entity) {
                        (None, Some(e)) => view! {
                            <td class="px-4 py-2">{e.kind_label()}</td>
                            <td class="px-4 py-2 text-right">{format!("{} s", e.lock_duration_secs)}</td>
                            <td class="px-4 py-2 text-right">{e.max_delivery_count}</td>
                            <td class="px-4 py-2 text-right">{e.active}</td>
                            <td class="px-4 py-2 text-right">{e.dead_letter}</td>
                        }
                        .into_any(),
                        (Some(q), _) => view! {
                            <td class="px-4 py-2">{if q.fifo { "FIFO" } else { "Standard" }}</td>
                            <td class="px-4 py-2">{q.redrive.unwrap_or_else(|| "–".into())}</td>
                            <td class="px-4 py-2 text-right">{format!("{} s", q.visibility_timeout_secs)}</td>
                            <td class="px-4 py-2 text-right">{q.visible}</td>
                            <td class="px-4 py-2 text-right">{q.in_flight}</td>
                            <td class="px-4 py-2 text-right">{q.delayed}</td>
                        }
                        .into_any(),
                        (None, None) => view! {
                            <td class="px-4 py-2 text-right">{t.partitions}</td>
                            <td class="px-4 py-2 text-right">{t.replication_factor}</td>
                            <td class="px-4 py-2 text-right">{t.message_count}</td>
                        }
                        .into_any(),
                    }}
                </tr>
            }
        })
        .collect_view();

    view! {
        <section aria-labelledby="topics-title" class="mt-6">
            <div class="flex items-center justify-between">
                <h2 id="topics-title" class="text-lg font-semibold">{if sqs { "Queues" } else { "Topics" }}</h2>
                <button
                    type="button"
                    class="rounded border border-slate-300 bg-white px-3 py-1.5 text-sm hover:bg-slate-50"
                    aria-expanded=move || creating.get().to_string()
                    on:click=move |_| creating.update(|c| *c = !*c)
                >
                    "Create topic"
                </button>
            </div>
            {move || created.get().map(|m| view! { <div class="mt-2"><SuccessNotice message=m /></div> })}
            <Show when=move || creating.get()>
                <CreateTopicForm
                    connection_id=connection_id.clone()
                    sqs=sqs
                    on_created=Callback::new(move |name: String| {
                        creating.set(false);
                        let what = if sqs { "Queue" } else { "Topic" };
                        created.set(Some(format!("{what} '{name}' created.")));
                        reload.run(());
                    })
                />
            </Show>
            <div class="mt-3">
                {match (empty, sqs) {
                    (true, _) if bus => view! {
                        <EmptyState title="This namespace has no queues or topics yet (or Service Bus could not be reached).">
                            "Use Create topic to add a queue."
                        </EmptyState>
                    }
                    .into_any(),
                    (false, _) if bus => view! {
                        <Table columns=&["Queue, topic or subscription", "Kind", "Lock duration", "Max deliveries", "Active", "Dead-lettered"] right=2>{rows}</Table>
                    }
                    .into_any(),
                    (true, false) => view! {
                        <EmptyState title="This broker has no topics yet (or it could not be reached).">
                            "Use Create topic to add one."
                        </EmptyState>
                    }
                    .into_any(),
                    (true, true) => view! {
                        <EmptyState title="This account has no queues in this region yet (or SQS could not be reached).">
                            "Use Create topic to add one; a name that ends in .fifo makes a FIFO queue."
                        </EmptyState>
                    }
                    .into_any(),
                    (false, false) => view! {
                        <Table columns=&["Topic", "Partitions", "Replication factor", "Messages"] right=3>{rows}</Table>
                    }
                    .into_any(),
                    (false, true) => view! {
                        <Table columns=&["Queue", "Type", "Redrive policy", "Visibility timeout", "Visible", "In flight", "Delayed"] right=4>{rows}</Table>
                    }
                    .into_any(),
                }}
            </div>
        </section>
    }
}

#[component]
fn CreateTopicForm(
    connection_id: String,
    /// An SQS queue has no partitions to choose.
    sqs: bool,
    on_created: Callback<String>,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let partitions = RwSignal::new("3".to_owned());
    let create = Submit::new(
        move |(name, partitions): (String, u32)| {
            create_topic(connection_id.clone(), name, partitions)
        },
        move |()| on_created.run(name.get_untracked()),
    );
    let (error, pending) = (create.error, create.pending());
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match partitions.get_untracked().trim().parse::<u32>() {
            _ if sqs => create.run((name.get_untracked(), 1)),
            Ok(n) if (1..=MAX_PARTITIONS).contains(&n) => {
                create.run((name.get_untracked(), n));
            }
            _ => error.set(Some(AppError::validation(
                "partitions",
                format!("A topic needs between 1 and {MAX_PARTITIONS} partitions."),
            ))),
        }
    };
    view! {
        <form on:submit=on_submit aria-label="Create topic" class="mt-3 flex flex-wrap items-start gap-4 rounded-lg bg-white p-4 shadow" novalidate>
            <div>
                <label for="topic-name" class="block text-sm font-medium">{if sqs { "Queue name" } else { "Topic name" }}</label>
                <input id="topic-name" aria-describedby="topic-name-error" aria-invalid=invalid(error, "topic") class="mt-1 rounded border border-slate-300 px-3 py-1.5" bind:value=name />
                <FieldError error=error field="topic" input="topic-name" />
            </div>
            <div class:hidden=sqs>
                <label for="topic-partitions" class="block text-sm font-medium">"Partitions"</label>
                <input
                    id="topic-partitions"
                    aria-describedby="topic-partitions-error"
                    aria-invalid=invalid(error, "partitions")
                    type="number"
                    min="1"
                    class="mt-1 w-28 rounded border border-slate-300 px-3 py-1.5"
                    bind:value=partitions
                />
                <FieldError error=error field="partitions" input="topic-partitions" />
            </div>
            <button
                type="submit"
                class="mt-6 rounded bg-blue-700 px-4 py-1.5 text-sm font-medium text-white hover:bg-blue-800 disabled:opacity-60"
                disabled=move || pending.get()
            >
                {move || if pending.get() { "Creating…" } else { "Create" }}
            </button>
            <div class="w-full"><FormError error=error /></div>
        </form>
    }
}

#[component]
fn DeleteDialog(
    id: String,
    name: String,
    flows: Vec<String>,
    on_close: Callback<()>,
) -> impl IntoView {
    let navigate = use_navigate();
    let delete = Submit::new(
        move |()| delete_broker_connection(id.clone()),
        move |()| navigate("/admin/queues", NavigateOptions::default()),
    );
    let no_flows = flows.is_empty();
    view! {
        <Dialog title="Delete broker connection?".to_owned() on_close=on_close>
            <p>
                "The broker connection " <strong>{name}</strong>
                " will be removed and can no longer be used by algorithms. Its topic access list is removed too."
            </p>
            {if no_flows {
                view! { <p class="mt-2 text-slate-600">"No flows use this connection."</p> }.into_any()
            } else {
                view! {
                    <p class="mt-2">"These flows will stop:"</p>
                    <ul class="mt-1 list-disc pl-6">
                        {flows.into_iter().map(|f| view! { <li>{f}</li> }).collect_view()}
                    </ul>
                }
                .into_any()
            }}
            <ConfirmActions submit=delete label="Delete" busy="Deleting…" on_cancel=on_close />
        </Dialog>
    }
}
