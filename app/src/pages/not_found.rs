use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn NotFoundPage() -> impl IntoView {
    view! {
        <main class="mx-auto max-w-xl p-8">
            <h1 class="text-xl font-semibold">"Page not found"</h1>
            <p class="mt-2">"There is no page at this address."</p>
            <A href="/catalog" attr:class="mt-4 inline-block text-blue-700 underline">
                "Go to the ML service catalog"
            </A>
        </main>
    }
}
