use leptos::prelude::*;

use crate::domain::ConnectionStatus;

/// "Reachable" in green, or "Unreachable" in red with the broker's words.
#[component]
pub fn StatusBadge(status: ConnectionStatus) -> impl IntoView {
    match status {
        ConnectionStatus::Reachable => view! {
            <span class="inline-flex items-center rounded-full bg-green-100 px-2 py-0.5 text-xs font-medium text-green-800">
                "Reachable"
            </span>
        }
        .into_any(),
        ConnectionStatus::Unreachable(why) => view! {
            <span class="inline-flex flex-col">
                <span class="inline-flex w-fit items-center rounded-full bg-red-100 px-2 py-0.5 text-xs font-medium text-red-800">
                    "Unreachable"
                </span>
                <span class="mt-1 text-xs text-red-800">{why}</span>
            </span>
        }
        .into_any(),
    }
}
