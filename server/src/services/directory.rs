//! Users, organizations, memberships and algorithms: what the command line
//! manages.

use app::domain::{AlgorithmPath, AppError, OrgName, Role, Runtime, Username, Version};

use super::auth::{MIN_PASSWORD_LEN, hash_password};
use super::{Services, internal};
use crate::db::{DbError, algorithms, directory, users};

fn conflict_or_internal(error: DbError, message: String) -> AppError {
    if error.is_unique_violation() {
        AppError::conflict(message)
    } else {
        internal(error)
    }
}

impl Services {
    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<(), AppError> {
        let username = Username::parse(username)?;
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(AppError::validation(
                "password",
                format!("A password needs at least {MIN_PASSWORD_LEN} characters."),
            ));
        }
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|_| AppError::Internal)??;
        let name = username.as_str().to_owned();
        self.db
            .interact(move |c| users::insert_user(c, &name, &hash, role.as_str()))
            .await
            .map_err(|e| {
                conflict_or_internal(e, format!("The user '{username}' already exists."))
            })?;
        Ok(())
    }

    pub async fn add_organization(&self, name: &str) -> Result<(), AppError> {
        let org = OrgName::parse(name)?;
        let name = org.as_str().to_owned();
        self.db
            .interact(move |c| directory::insert_organization(c, &name))
            .await
            .map_err(|e| {
                conflict_or_internal(e, format!("The organization '{org}' already exists."))
            })?;
        Ok(())
    }

    /// Makes `username` a member of `org`; false when already a member.
    pub async fn add_member(&self, org: &str, username: &str) -> Result<bool, AppError> {
        let org = OrgName::parse(org)?;
        let username = Username::parse(username)?;
        let (o, u) = (org.as_str().to_owned(), username.as_str().to_owned());
        let found = self
            .db
            .interact(move |c| {
                Ok((
                    directory::find_organization(c, &o)?,
                    users::find_user(c, &u)?,
                ))
            })
            .await?;
        let org_id = found
            .0
            .ok_or_else(|| AppError::not_found(format!("The organization '{org}'")))?;
        let user = found
            .1
            .ok_or_else(|| AppError::not_found(format!("The user '{username}'")))?;
        Ok(self
            .db
            .interact(move |c| directory::insert_membership(c, &org_id, &user.id))
            .await?)
    }

    /// Adds a version to an algorithm, creating the algorithm if it is new.
    pub async fn add_algorithm_version(
        &self,
        path: &str,
        version: &str,
        runtime: &str,
        description: &str,
    ) -> Result<(), AppError> {
        let path = AlgorithmPath::parse(path)?;
        let version = Version::parse(version)?;
        let runtime = Runtime::parse(runtime)?;
        self.check_model_host(&runtime).await?;
        let (org, name, text) = (
            path.org.as_str().to_owned(),
            path.name.as_str().to_owned(),
            version.to_string(),
        );
        let (runtime_text, description) = (runtime.to_string(), description.to_owned());
        let org_path = path.org.to_string();
        let exists = format!("{path} already has a version {version}.");
        Ok(self
            .db
            .transaction(move |c| {
                let Some(org_id) = directory::find_organization(c, &org)? else {
                    return Err(DbError::Refused(AppError::not_found(format!(
                        "The organization '{org_path}'"
                    ))));
                };
                let algorithm_id = match algorithms::id_in_organization(c, &org_id, &name)? {
                    Some(id) => id,
                    None => algorithms::insert(c, &org_id, &name, &description)?,
                };
                if algorithms::version_exists(c, &algorithm_id, &text)? {
                    return Err(DbError::Refused(AppError::conflict(exists)));
                }
                algorithms::insert_version(
                    c,
                    &algorithms::NewVersion {
                        algorithm_id: &algorithm_id,
                        version: &text,
                        major: version.major.into(),
                        minor: version.minor.into(),
                        patch: version.patch.into(),
                        runtime: &runtime_text,
                    },
                )?;
                Ok(())
            })
            .await?)
    }
}
