// GraphiQL with the explorer plugin, against the page's own URL (HTTP for queries and
// mutations, WebSocket for subscriptions). A file, not an inline script, so that the page's
// Content-Security-Policy can allow scripts from this server only.
"use strict";

(function () {
  const EXAMPLE_QUERY = `# The wallet API. Ctrl-Enter runs the operation; Ctrl-Space completes.
# Try:
#
# mutation {
#   createWallet(input: {currency: "USD", initialBalance: "100.00"}) {
#     wallet { id currency balance }
#     errors { code message field }
#   }
# }
`;

  // The query, variables and headers travel in the URL, so a link shares them.
  const parameters = {};
  for (const entry of window.location.search.slice(1).split("&")) {
    const eq = entry.indexOf("=");
    if (eq >= 0) {
      parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(
        entry.slice(eq + 1),
      );
    }
  }

  function updateURL(data) {
    Object.assign(parameters, data);
    const search = Object.keys(parameters)
      .filter((key) => Boolean(parameters[key]))
      .map((key) => encodeURIComponent(key) + "=" + encodeURIComponent(parameters[key]))
      .join("&");
    history.replaceState(null, null, "?" + search);
  }

  // `wallet dev` opens this page with its developer's token after "#token=": a fragment never
  // reaches a server or its logs. It becomes the Authorization header of queries and the
  // WebSocket's connection_init payload, and leaves the address bar at once.
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  const authorization = token ? { Authorization: "Bearer " + token } : undefined;
  if (token) {
    history.replaceState(null, null, window.location.pathname + window.location.search);
  }

  const fetchURL = window.location.href.split("?")[0].split("#")[0];
  const subscriptionURL = new URL(fetchURL);
  subscriptionURL.protocol = subscriptionURL.protocol === "http:" ? "ws:" : "wss:";
  subscriptionURL.hash = "";

  const fetcher = GraphiQL.createFetcher({
    url: fetchURL,
    subscriptionUrl: subscriptionURL.toString(),
    wsConnectionParams: authorization,
  });
  const explorer = GraphiQLPluginExplorer.explorerPlugin();

  function WalletGraphiQL() {
    const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
    const [variables, setVariables] = React.useState(parameters.variables);
    const [headers, setHeaders] = React.useState(
      parameters.headers || (authorization && JSON.stringify(authorization, null, 2)),
    );
    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      plugins: [explorer],
      query: query,
      variables: variables,
      headers: headers,
      onEditQuery: (value) => {
        setQuery(value);
        updateURL({ q: value });
      },
      onEditVariables: (value) => {
        setVariables(value);
        updateURL({ variables: value });
      },
      onEditHeaders: setHeaders,
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(WalletGraphiQL),
  );
})();
