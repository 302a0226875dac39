<%--
  stickyroute's Tomcat test application: a session counter. Every request adds one to the
  session's count and answers, as one line of JSON, which node served it (the jvm.route system
  property, the same value as the Engine's jvmRoute), the session id as the node knows it, the
  count, and whether the session was created by this request.
--%><%@ page contentType="application/json; charset=UTF-8" session="true" trimDirectiveWhitespaces="true" %><%
    Integer count = (Integer) session.getAttribute("count");
    count = count == null ? 1 : count + 1;
    session.setAttribute("count", count);
%>{"node":"<%= System.getProperty("jvm.route") %>","session":"<%= session.getId() %>","count":<%= count %>,"new":<%= session.isNew() %>}
