//! What a form or a button does with a server call: it runs the call, is
//! pending while the call runs, keeps the refusal for the form to show, and
//! hands the answer to the page.

use std::future::Future;

use leptos::prelude::*;

use crate::domain::AppError;

/// A server call a form submits: see [`Submit::new`].
pub struct Submit<I: 'static, O: 'static> {
    action: Action<I, Result<O, AppError>>,
    /// Why the server refused the last call, for `FieldError` / `FormError`.
    pub error: RwSignal<Option<AppError>>,
}

impl<I, O> Clone for Submit<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for Submit<I, O> {}

impl<I: Clone + 'static, O: Clone + 'static> Submit<I, O> {
    /// `call` runs with each submitted input; `on_done` gets each answer
    /// the server accepted.
    pub fn new<F: Future<Output = Result<O, AppError>> + 'static>(
        call: impl Fn(I) -> F + 'static,
        on_done: impl Fn(O) + 'static,
    ) -> Self {
        Self::reporting(call, on_done, |_| {})
    }

    /// [`Submit::new`] for a call whose refusal the page shows in a place
    /// of its own (a button in a table row): `on_refused` gets it too.
    pub fn reporting<F: Future<Output = Result<O, AppError>> + 'static>(
        call: impl Fn(I) -> F + 'static,
        on_done: impl Fn(O) + 'static,
        on_refused: impl Fn(&AppError) + 'static,
    ) -> Self {
        let error = RwSignal::new(None);
        let action = Action::new_local(move |input: &I| call(input.clone()));
        Effect::new(move |_| match action.value().get() {
            Some(Ok(answer)) => on_done(answer),
            Some(Err(refusal)) => {
                on_refused(&refusal);
                error.set(Some(refusal));
            }
            None => {}
        });
        Submit { action, error }
    }

    /// Sends `input`, clearing the last refusal.
    pub fn run(&self, input: I) {
        self.error.set(None);
        self.action.dispatch_local(input);
    }

    /// Whether a call is under way (for "Saving…" and disabled buttons).
    pub fn pending(&self) -> Memo<bool> {
        self.action.pending()
    }
}
