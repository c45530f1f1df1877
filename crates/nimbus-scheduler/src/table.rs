use std::collections::HashMap;
use std::sync::Arc;

use nimbus_core::{ErrorCode, FunctionName, FunctionSpec, PlatformError, RoutePattern};

use crate::DeployedFunction;

/// Immutable snapshot of what is deployed and which paths reach it. A
/// deploy builds a new table; readers never wait.
#[derive(Default, Clone)]
pub struct FunctionTable {
    by_name: HashMap<FunctionName, Arc<DeployedFunction>>,
    exact: HashMap<String, Arc<DeployedFunction>>,
    /// Longest prefix first, so the most specific route wins.
    prefixes: Vec<(String, Arc<DeployedFunction>)>,
}

/// A route another function already owns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route} is already served by function {owner}: remove it there first, or choose another route")]
pub struct RouteConflict {
    pub route: String,
    pub owner: String,
}

/// The function a gateway request goes to.
pub struct RouteMatch {
    pub function: Arc<DeployedFunction>,
}

impl FunctionTable {
    pub fn get(&self, name: &FunctionName) -> Option<&Arc<DeployedFunction>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn functions(&self) -> impl Iterator<Item = &Arc<DeployedFunction>> {
        self.by_name.values()
    }

    pub(crate) fn check_routes(&self, spec: &FunctionSpec) -> Result<(), RouteConflict> {
        for route in &spec.routes {
            let owner = match &route.route {
                RoutePattern::Exact(p) => self.exact.get(p),
                RoutePattern::Prefix(p) => self.prefixes.iter().find(|(q, _)| q == p).map(|(_, f)| f),
            };
            if let Some(owner) = owner.filter(|f| f.name() != &spec.name) {
                return Err(RouteConflict { route: route.route.to_string(), owner: owner.name().to_string() });
            }
        }
        Ok(())
    }

    /// A copy of this table with `function` added or replacing its namesake.
    pub(crate) fn with(&self, function: Arc<DeployedFunction>) -> Result<Self, RouteConflict> {
        self.check_routes(&function.record.spec)?;
        let (mut next, _) = self.without(function.name());
        for route in &function.record.spec.routes {
            match &route.route {
                RoutePattern::Exact(p) => {
                    next.exact.insert(p.clone(), function.clone());
                }
                RoutePattern::Prefix(p) => next.prefixes.push((p.clone(), function.clone())),
            }
        }
        next.prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        next.by_name.insert(function.name().clone(), function);
        Ok(next)
    }

    pub(crate) fn without(&self, name: &FunctionName) -> (Self, bool) {
        let mut next = self.clone();
        let was_there = next.by_name.remove(name).is_some();
        next.exact.retain(|_, f| f.name() != name);
        next.prefixes.retain(|(_, f)| f.name() != name);
        (next, was_there)
    }

    /// Finds the function for a gateway request.
    pub fn route(&self, path: &str, method: &str) -> Result<RouteMatch, PlatformError> {
        let candidate = self.exact.get(path).map(|f| (f, RoutePattern::Exact(path.to_owned()))).or_else(|| {
            self.prefixes
                .iter()
                .map(|(p, f)| (f, RoutePattern::Prefix(p.clone())))
                .find(|(_, pattern)| pattern.matches(path))
        });
        let Some((function, pattern)) = candidate else {
            return Err(PlatformError::new(ErrorCode::NotFound, format!("no function is routed at {path}")));
        };
        let route = function.record.spec.routes.iter().find(|r| r.route == pattern);
        if route.is_some_and(|r| !r.allows_method(method)) {
            let allowed = route.and_then(|r| r.methods.as_ref()).map(|m| m.join(", ")).unwrap_or_default();
            return Err(PlatformError::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on {path}; allowed: {allowed}"),
            ));
        }
        Ok(RouteMatch { function: function.clone() })
    }
}
