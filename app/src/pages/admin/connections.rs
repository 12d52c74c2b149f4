use leptos::prelude::*;

use crate::components::style;
use leptos_router::components::A;

use crate::api::list_broker_connections;
use crate::components::{Listing, StatusBadge, Table};
use crate::domain::BrokerConnectionSummary;

/// Admin → System actions → **Queue manager**: the broker connections.
#[component]
pub fn BrokerConnectionsPage() -> impl IntoView {
    let connections = LocalResource::new(list_broker_connections);

    view! {
        <div class="flex items-center justify-between">
            <h1 class="text-2xl font-semibold">"Queue manager"</h1>
            <A
                href="/admin/queues/new"
                attr:class=style::BUTTON_PRIMARY
            >
                "Connect queue"
            </A>
        </div>
        <p class="mt-1 text-slate-600">"Broker connections of this cluster."</p>
        <section class="mt-6" aria-label="Broker connections">
            <Listing list=connections what="broker connections"
                empty="No broker connections yet."
                hint="Use Connect queue to connect a Kafka cluster; its topics can then be opened to algorithms."
                view=|list| view! { <ConnectionTable list=list /> }
            />
        </section>
    }
}

#[component]
fn ConnectionTable(list: Vec<BrokerConnectionSummary>) -> impl IntoView {
    view! {
        <Table columns=&["Name", "Type", "Bootstrap servers", "Status", "Topics", "Flows"] right=2>
            {list
                .into_iter()
                .map(|c| {
                    let href = format!("/admin/queues/{}", c.id);
                    view! {
                        <tr class="border-t border-slate-100">
                            <td class="px-4 py-2 font-medium">
                                <A href=href attr:class="text-blue-700 hover:underline">{c.name}</A>
                            </td>
                            <td class="px-4 py-2">{c.kind.label()}</td>
                            <td class="px-4 py-2 font-mono text-xs">{c.bootstrap_servers}</td>
                            <td class="px-4 py-2"><StatusBadge status=c.status /></td>
                            <td class="px-4 py-2 text-right">
                                {c.topic_count.map(|n| n.to_string()).unwrap_or_else(|| "–".into())}
                            </td>
                            <td class="px-4 py-2 text-right">{c.flow_count}</td>
                        </tr>
                    }
                })
                .collect_view()}

        </Table>
    }
}
