use leptos::prelude::*;
use leptos_router::components::A;

/// The **Admin** menu: category **System actions**, items **Queue manager**,
/// **Model hosts** and **Audit log**.
/// Opens with a click, Enter or Space; closes with Esc or when an item is chosen.
/// The items of **System actions**: address and label.
const ITEMS: [(&str, &str); 3] = [
    ("/admin/queues", "Queue manager"),
    ("/admin/model-hosts", "Model hosts"),
    ("/admin/audit", "Audit log"),
];

#[component]
pub fn AdminMenu() -> impl IntoView {
    let open = RwSignal::new(false);
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Escape" {
            open.set(false);
        }
    };

    view! {
        <div class="relative" on:keydown=on_key>
            <button
                type="button"
                class="text-slate-200 hover:text-white"
                aria-haspopup="menu"
                aria-controls="admin-menu"
                aria-expanded=move || open.get().to_string()
                on:click=move |_| open.update(|o| *o = !*o)
            >
                "Admin"
            </button>
            <Show when=move || open.get()>
                <div
                    id="admin-menu"
                    role="menu"
                    aria-label="Admin"
                    class="absolute left-0 z-20 mt-2 w-56 rounded-md bg-white py-2 text-slate-900 shadow-lg ring-1 ring-slate-200"
                >
                    <div role="group" aria-labelledby="admin-menu-system-actions">
                        <p
                            id="admin-menu-system-actions"
                            class="px-4 pb-1 text-xs font-semibold uppercase tracking-wide text-slate-500"
                        >
                            "System actions"
                        </p>
                        {ITEMS
                            .iter()
                            .map(|(href, label)| view! {
                                <A
                                    href=*href
                                    attr:role="menuitem"
                                    attr:class="block px-4 py-2 hover:bg-slate-100 focus:bg-slate-100"
                                    on:click=move |_| open.set(false)
                                >
                                    {*label}
                                </A>
                            })
                            .collect_view()}
                    </div>
                </div>
            </Show>
        </div>
    }
}
