use leptos::prelude::*;

/// Admin → System actions → **Queue manager**: the broker connections.
#[component]
pub fn QueueManagerPage() -> impl IntoView {
    view! {
        <h1 class="text-2xl font-semibold">"Queue manager"</h1>
        <p class="mt-2 text-slate-600">"Broker connections of this cluster."</p>
    }
}
