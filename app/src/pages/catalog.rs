use leptos::prelude::*;

/// **ML service catalog**: the algorithms the user can see.
#[component]
pub fn CatalogPage() -> impl IntoView {
    view! {
        <h1 class="text-2xl font-semibold">"ML service catalog"</h1>
        <p class="mt-2 text-slate-600">"Algorithms of your organizations."</p>
    }
}
