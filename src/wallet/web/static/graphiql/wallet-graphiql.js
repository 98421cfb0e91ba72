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

  const fetchURL = window.location.href.split("?")[0];
  const subscriptionURL = new URL(fetchURL);
  subscriptionURL.protocol = subscriptionURL.protocol === "http:" ? "ws:" : "wss:";
  subscriptionURL.hash = "";

  const fetcher = GraphiQL.createFetcher({
    url: fetchURL,
    subscriptionUrl: subscriptionURL.toString(),
  });
  const explorer = GraphiQLPluginExplorer.explorerPlugin();

  function WalletGraphiQL() {
    const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
    const [variables, setVariables] = React.useState(parameters.variables);
    const [headers, setHeaders] = React.useState(parameters.headers);
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
